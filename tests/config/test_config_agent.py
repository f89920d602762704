"""Loading of the agent's configuration file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from warden.config import AgentConfig, ConfigError, load_agent_config
from warden.config.agent_plugins import (
    AgentDiskKeyManager,
    AwsIidAgent,
    DockerWorkloadAttestor,
    K8sWorkloadAttestor,
    UnixWorkloadAttestor,
    X509PopAgent,
)

WriteConfig = Callable[..., Path]

MINIMAL = """
agent {
  trust_domain = "example.org"
  server_address = "spire-server.internal"
  server_port = "8081"
  trust_bundle_path = "bootstrap.crt"
}
plugins {
  NodeAttestor "x509pop" {
    plugin_data {
      private_key_path = "agent.key.pem"
      certificate_path = "agent.crt.pem"
    }
  }
}
"""

# A realistic agent configuration in SPIRE's layout, with settings Warden does not
# implement; it must load with warnings only.
SPIRE_STYLE_AGENT = """
agent {
    data_dir = "/var/lib/spire/agent"
    log_level = "INFO"
    log_format = "json"
    log_file = "/var/log/spire/agent.log"
    server_address = "spire-server.spire.svc"
    server_port = 8081
    socket_path = "/run/spire/sockets/agent.sock"
    trust_bundle_path = "/run/spire/bundle/bundle.crt"
    trust_bundle_format = "pem"
    trust_domain = "prod.example.org"
    admin_socket_path = "/run/spire/admin/admin.sock"
    authorized_delegates = ["spiffe://prod.example.org/istio-agent"]
    allowed_foreign_jwt_claims = []
    availability_target = "24h"
    workload_x509_svid_key_type = "ec-p256"
    log_source_location = false
    sds {
        default_svid_name = "default"
        default_bundle_name = "ROOTCA"
    }
    experimental {
        sync_interval = "5s"
    }
}

plugins {
    NodeAttestor "aws_iid" {
        plugin_data {
            ec2_metadata_endpoint = "http://127.0.0.1:1338"
        }
    }

    KeyManager "disk" {
        plugin_data {
            directory = "/var/lib/spire/agent"
        }
    }

    WorkloadAttestor "k8s" {
        plugin_data {
            kubelet_secure_port = 10250
            skip_kubelet_verification = false
            node_name_env = "MY_NODE_NAME"
            max_poll_attempts = 30
            poll_retry_interval = "250ms"
            reload_interval = "1m"
            use_new_container_locator = true
        }
    }

    WorkloadAttestor "docker" {
        plugin_data {
            docker_socket_path = "unix:///var/run/docker.sock"
            container_id_cgroup_matchers = ["/docker/<id>"]
            podman_socket_path = "unix:///run/podman/podman.sock"
        }
    }

    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
            workload_size_limit = 1048576
        }
    }
}

health_checks {
    listener_enabled = true
    bind_address = "0.0.0.0"
    bind_port = "8080"
    live_path = "/live"
    ready_path = "/ready"
}

telemetry {
    Prometheus {
        host = "127.0.0.1"
        port = 9988
    }
    MetricPrefix = "spire"
}
"""


def _load(write_config: WriteConfig, text: str) -> AgentConfig:
    return load_agent_config(write_config(text, "agent.conf"))


def _error(write_config: WriteConfig, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load(write_config, text)
    return caught.value


def test_minimal_agent_loads(write_config: WriteConfig, tmp_path: Path) -> None:
    config = _load(write_config, MINIMAL)

    agent = config.agent
    assert agent.trust_domain.name == "example.org"
    assert agent.server_address == "spire-server.internal"
    assert agent.server_port == 8081
    assert agent.trust_bundle_path == tmp_path / "bootstrap.crt"
    assert agent.socket_path == Path("/tmp/spire-agent/public/api.sock")
    assert agent.data_dir == tmp_path / "data"
    assert config.warnings == ()

    attestor = config.plugins.node_attestor
    assert attestor.name == "x509pop"
    assert isinstance(attestor.data, X509PopAgent)
    assert attestor.data.private_key_path == tmp_path / "agent.key.pem"


def test_agent_defaults(write_config: WriteConfig, tmp_path: Path) -> None:
    config = _load(write_config, MINIMAL)

    key_manager = config.plugins.key_manager
    assert (key_manager.name, key_manager.line) == ("disk", None)
    assert isinstance(key_manager.data, AgentDiskKeyManager)
    assert key_manager.data.directory == tmp_path / "data"
    workload = config.plugins.workload_attestors
    assert [plugin.name for plugin in workload] == ["unix"]
    assert isinstance(workload[0].data, UnixWorkloadAttestor)
    assert workload[0].data.proc_root == Path("/proc")


def test_spire_style_agent_loads_with_warnings(write_config: WriteConfig) -> None:
    config = _load(write_config, SPIRE_STYLE_AGENT)

    assert config.agent.log_format == "json"
    assert config.agent.socket_path == Path("/run/spire/sockets/agent.sock")
    assert isinstance(config.plugins.node_attestor.data, AwsIidAgent)
    assert config.plugins.node_attestor.data.ec2_metadata_endpoint == "http://127.0.0.1:1338"
    names = [plugin.name for plugin in config.plugins.workload_attestors]
    assert names == ["k8s", "docker", "unix"]
    k8s = config.plugins.workload_attestor("k8s")
    assert k8s is not None
    assert isinstance(k8s.data, K8sWorkloadAttestor)
    assert k8s.data.poll_retry_interval == timedelta(milliseconds=250)
    assert k8s.data.kubelet_port == 10250
    docker = config.plugins.workload_attestor("docker")
    assert docker is not None
    assert isinstance(docker.data, DockerWorkloadAttestor)
    assert docker.data.container_id_cgroup_matchers == ("/docker/<id>",)
    assert config.health_checks.listener_enabled is True
    assert config.telemetry.prometheus is not None
    assert config.telemetry.prometheus.port == 9988

    warned = {warning.key for warning in config.warnings}
    assert warned == {
        "agent.admin_socket_path",
        "agent.authorized_delegates",
        "agent.allowed_foreign_jwt_claims",
        "agent.availability_target",
        "agent.workload_x509_svid_key_type",
        "agent.log_source_location",
        "agent.sds",
        "agent.experimental",
        "plugins.WorkloadAttestor.k8s.plugin_data.reload_interval",
        "plugins.WorkloadAttestor.k8s.plugin_data.use_new_container_locator",
        "plugins.WorkloadAttestor.docker.plugin_data.podman_socket_path",
        "telemetry.MetricPrefix",
    }
    for warning in config.warnings:
        assert warning.line is not None
        assert "does not implement" in warning.message


def test_insecure_bootstrap_warns_loudly(write_config: WriteConfig) -> None:
    text = MINIMAL.replace('trust_bundle_path = "bootstrap.crt"', "insecure_bootstrap = true")

    config = _load(write_config, text)

    assert config.agent.insecure_bootstrap is True
    warning = next(w for w in config.warnings if w.key == "agent.insecure_bootstrap")
    assert warning.line == 5
    assert warning.message.startswith("INSECURE")
    assert "development only" in warning.message


def test_insecure_bootstrap_excludes_bundle(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        'trust_bundle_path = "bootstrap.crt"',
        'trust_bundle_path = "bootstrap.crt"\n  insecure_bootstrap = true',
    )

    error = _error(write_config, text)

    assert (error.line, error.key) == (6, "agent.insecure_bootstrap")


def test_missing_trust_bundle_is_an_error(write_config: WriteConfig) -> None:
    error = _error(write_config, MINIMAL.replace('trust_bundle_path = "bootstrap.crt"', ""))

    assert error.key == "agent.trust_bundle_path"
    assert "insecure_bootstrap = true for development only" in error.message


def test_trust_bundle_url_is_not_a_bundle_source(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        'trust_bundle_path = "bootstrap.crt"',
        'trust_bundle_url = "https://bundles.example.org/bundle.pem"',
    )

    error = _error(write_config, text)

    assert error.key == "agent.trust_bundle_path"


def test_join_token_implies_join_token_attestor(write_config: WriteConfig) -> None:
    config = _load(
        write_config,
        """
        agent {
          trust_domain = "example.org"
          trust_bundle_path = "bundle.pem"
          join_token = "5f1d6d3e-7a2b-4c4e-9d3c-6f0e2a1b9c8d"
        }
        """,
    )

    assert config.plugins.node_attestor.name == "join_token"
    assert config.plugins.node_attestor.line is None
    assert config.agent.read_join_token() == "5f1d6d3e-7a2b-4c4e-9d3c-6f0e2a1b9c8d"
    assert "5f1d6d3e" not in repr(config)


def test_join_token_file_is_read(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n", encoding="utf-8")

    config = _load(
        write_config,
        """
        agent {
          trust_domain = "example.org"
          trust_bundle_path = "bundle.pem"
          join_token_file = "token"
        }
        """,
    )

    assert config.agent.join_token_file == tmp_path / "token"
    assert config.agent.read_join_token() == "tok-123"


def test_join_token_conflicts_with_other_attestor(write_config: WriteConfig) -> None:
    text = MINIMAL.replace('server_port = "8081"', 'server_port = "8081"\n  join_token = "abc"')

    error = _error(write_config, text)

    assert error.key == "plugins.NodeAttestor.x509pop"
    assert "join token" in error.message


def test_missing_node_attestor_is_an_error(write_config: WriteConfig) -> None:
    error = _error(
        write_config,
        """
        agent {
          trust_domain = "example.org"
          trust_bundle_path = "bundle.pem"
        }
        """,
    )

    assert error.key == "plugins.NodeAttestor"
    assert "join_token" in error.message


def test_two_node_attestors_are_an_error(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {", 'plugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }'
    )

    error = _error(write_config, text)

    assert error.key == "plugins.NodeAttestor"
    assert "only one NodeAttestor" in error.message


def test_unsupported_workload_attestor_lists_supported(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {", 'plugins {\n  WorkloadAttestor "systemd" {\n    plugin_data {}\n  }'
    )

    error = _error(write_config, text)

    assert (error.line, error.key) == (8, "plugins.WorkloadAttestor.systemd")
    assert "supported WorkloadAttestor plugins: docker, k8s, unix" in error.message


def test_svid_store_is_rejected(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {", 'plugins {\n  SVIDStore "aws_secretsmanager" {\n    plugin_data {}\n  }'
    )

    error = _error(write_config, text)

    assert error.key == "plugins.SVIDStore.aws_secretsmanager"
    assert "Warden implements no SVIDStore plugins" in error.message


def test_sigstore_is_rejected(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {",
        'plugins {\n  WorkloadAttestor "docker" {\n    plugin_data {\n'
        '      sigstore {\n        rekor_url = "https://rekor.sigstore.dev"\n      }\n'
        "    }\n  }",
    )

    error = _error(write_config, text)

    assert error.line == 10
    assert error.key == "plugins.WorkloadAttestor.docker.plugin_data.sigstore"


def test_k8s_ports_are_exclusive(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {",
        'plugins {\n  WorkloadAttestor "k8s" {\n    plugin_data {\n'
        "      kubelet_read_only_port = 10255\n      kubelet_secure_port = 10250\n"
        "    }\n  }",
    )

    error = _error(write_config, text)

    assert error.line == 11
    assert error.key == "plugins.WorkloadAttestor.k8s.plugin_data.kubelet_secure_port"


def test_skip_kubelet_verification_warns(write_config: WriteConfig) -> None:
    text = MINIMAL.replace(
        "plugins {",
        'plugins {\n  WorkloadAttestor "k8s" {\n    plugin_data {\n'
        "      skip_kubelet_verification = true\n    }\n  }",
    )

    config = _load(write_config, text)

    keys = [warning.key for warning in config.warnings]
    assert keys == ["plugins.WorkloadAttestor.k8s.plugin_data.skip_kubelet_verification"]


def test_missing_x509pop_key_is_named(write_config: WriteConfig) -> None:
    error = _error(write_config, MINIMAL.replace('private_key_path = "agent.key.pem"', ""))

    assert error.line == 9
    assert error.key == "plugins.NodeAttestor.x509pop.plugin_data.private_key_path"
    assert error.message == "missing required key"


def test_server_file_given_to_agent_loader(write_config: WriteConfig) -> None:
    error = _error(write_config, 'server {\n  trust_domain = "example.org"\n}\n')

    assert error.key == "server"
    assert "warden server run" in error.message


def test_plain_settings_for_attestor_models(write_config: WriteConfig) -> None:
    config = _load(write_config, SPIRE_STYLE_AGENT)
    k8s = config.plugins.workload_attestor("k8s")
    assert k8s is not None

    plain = k8s.data.plain_settings()

    assert plain["poll_retry_interval"] == "250ms"
    assert plain["proc_root"] == "/proc"
    assert plain["kubelet_secure_port"] == 10250
