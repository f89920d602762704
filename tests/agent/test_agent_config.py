"""From an agent configuration file in SPIRE's layout to the agent's options and plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.agent.attestor import DockerAttestor, K8sAttestor, UnixAttestor
from warden.agent.main import AgentConfigurationError, options_from_config
from warden.agent.nodeattest import JoinTokenAttestor, X509PopAttestor
from warden.config.agent import agent_config_from_text


def config_text(tmp_path: Path, plugins: str, agent_extra: str = "") -> str:
    (tmp_path / "bundle.pem").write_text("")
    return f"""
agent {{
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = "8081"
    socket_path = "{tmp_path}/api.sock"
    data_dir = "{tmp_path}/data"
    insecure_bootstrap = true
    {agent_extra}
}}
plugins {{
{plugins}
}}
"""


async def test_spire_layout_builds_every_plugin(tmp_path: Path) -> None:
    text = config_text(
        tmp_path,
        """
    NodeAttestor "join_token" { plugin_data {} }
    KeyManager "disk" { plugin_data { directory = "keys" } }
    WorkloadAttestor "unix" { plugin_data { discover_workload_path = true workload_size_limit = 1048576 } }
    WorkloadAttestor "docker" { plugin_data {
        docker_socket_path = "unix:///run/docker.sock"
        container_id_cgroup_matchers = ["/docker/<id>"]
    } }
    WorkloadAttestor "k8s" { plugin_data { kubelet_read_only_port = 10255 poll_retry_interval = "250ms" } }
""",
        agent_extra='join_token = "3b7a1c2e-token"',
    )
    config = agent_config_from_text(text, base_dir=tmp_path)

    options = options_from_config(config)

    assert str(options.trust_domain) == "example.org"
    assert options.server_port == 8081
    assert options.insecure_bootstrap
    assert isinstance(options.node_attestor, JoinTokenAttestor)
    assert await options.node_attestor.payload() == b"3b7a1c2e-token"
    unix, docker, k8s = options.workload_attestors
    assert isinstance(unix, UnixAttestor)
    assert unix.config.workload_size_limit == 1048576
    assert isinstance(docker, DockerAttestor)
    assert docker.config.container_id_cgroup_matchers == ["/docker/<id>"]
    assert isinstance(k8s, K8sAttestor)
    assert k8s.config.poll_retry_interval == 0.25
    for attestor in (docker, k8s):
        await attestor.close()


def test_join_token_flag_overrides_file(tmp_path: Path) -> None:
    text = config_text(
        tmp_path, 'NodeAttestor "join_token" { plugin_data {} }', 'join_token = "old"'
    )

    options = options_from_config(agent_config_from_text(text, base_dir=tmp_path), "new")

    assert options.node_attestor._token == "new"  # type: ignore[attr-defined]


def test_x509pop_with_missing_files_names_the_plugin(tmp_path: Path) -> None:
    text = config_text(
        tmp_path,
        f"""NodeAttestor "x509pop" {{ plugin_data {{
            private_key_path = "{tmp_path}/node.key"
            certificate_path = "{tmp_path}/node.pem"
        }} }}""",
    )

    with pytest.raises(AgentConfigurationError, match='NodeAttestor "x509pop"'):
        options_from_config(agent_config_from_text(text, base_dir=tmp_path))


def test_x509pop_loads_node_certificate(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "node.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "node.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    text = config_text(
        tmp_path,
        f"""NodeAttestor "x509pop" {{ plugin_data {{
            private_key_path = "{tmp_path}/node.key"
            certificate_path = "{tmp_path}/node.pem"
        }} }}""",
    )

    options = options_from_config(agent_config_from_text(text, base_dir=tmp_path))

    assert isinstance(options.node_attestor, X509PopAttestor)
    assert options.node_attestor.reattestable


def test_unreadable_trust_bundle_names_the_path(tmp_path: Path) -> None:
    text = config_text(tmp_path, 'NodeAttestor "join_token" { plugin_data {} }', 'join_token = "t"')
    text = text.replace("insecure_bootstrap = true", f'trust_bundle_path = "{tmp_path}/nope.pem"')

    with pytest.raises(AgentConfigurationError, match="trust_bundle_path"):
        options_from_config(agent_config_from_text(text, base_dir=tmp_path))
