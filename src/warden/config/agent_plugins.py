"""Settings of the agent's plugins, and the table of plugins the agent implements.

Key names and defaults follow SPIRE's plugin documentation (doc/plugin_agent_*.md in the
SPIRE repository) and its Go configuration structs. `proc_root` is Warden's own key: the
procfs tree that workload attestors read, which tests and containerised agents point
elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from warden.config.plugins import PluginCatalog, PluginData
from warden.config.values import (
    Bool,
    ConfigPath,
    HttpUrl,
    Int,
    Port,
    PositiveDuration,
    Str,
    StrList,
)

#: AWS's instance metadata service. The aws_iid attestor reads the instance identity
#: document there unless ec2_metadata_endpoint names another address.
AWS_METADATA_ENDPOINT = "http://169.254.169.254"
DEFAULT_PROC_ROOT = Path("/proc")
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
KUBERNETES_CA_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
KUBERNETES_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_SIGSTORE = (
    "Warden does not verify image signatures, so it cannot honour this block; remove it, "
    "or keep SPIRE for workloads that depend on signature selectors"
)

# --- NodeAttestor --------------------------------------------------------------------------


class JoinTokenAgent(PluginData):
    """`NodeAttestor "join_token"`: the token is set in the agent block, not here."""


class X509PopAgent(PluginData):
    """`NodeAttestor "x509pop"`: a certificate and key that a CA known to the server signed."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "spiffe_endpoint_socket": 'it serves the server\'s mode "spiffe", which Warden lacks',
    }

    private_key_path: ConfigPath
    #: The agent's certificate, optionally followed by its intermediates.
    certificate_path: ConfigPath
    intermediates_path: ConfigPath | None = None


class AwsIidAgent(PluginData):
    """`NodeAttestor "aws_iid"`: the instance identity document from the metadata service."""

    #: Base URL of the instance metadata service; tests point it at a local server.
    ec2_metadata_endpoint: HttpUrl = AWS_METADATA_ENDPOINT


# --- WorkloadAttestor ----------------------------------------------------------------------


class UnixWorkloadAttestor(PluginData):
    """`WorkloadAttestor "unix"`: the caller's uid, gid and, optionally, its binary."""

    discover_workload_path: Bool = False
    #: Largest binary in bytes hashed for `unix:sha256`; 0 means no limit, and a negative
    #: value never hashes.
    workload_size_limit: Int = 0
    proc_root: ConfigPath = DEFAULT_PROC_ROOT


class DockerWorkloadAttestor(PluginData):
    """`WorkloadAttestor "docker"`: labels, image and environment of the caller's container."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "podman_socket_path": "Warden reads containers from Docker only",
        "podman_socket_path_template": "Warden reads containers from Docker only",
        "docker_host": "it applies to Windows only",
        "experimental": "",
    }
    spire_rejected: ClassVar[Mapping[str, str]] = {"sigstore": _SIGSTORE}

    #: The Docker daemon's socket, as `unix:///path` or a bare absolute path.
    docker_socket_path: Str = DEFAULT_DOCKER_SOCKET
    #: Docker API version to request, such as "1.41"; empty uses the daemon's own.
    docker_version: Str = ""
    container_id_cgroup_matchers: StrList = ()
    #: Accepted as in SPIRE; Warden's container locator handles cgroup v1 and v2 either way.
    use_new_container_locator: Bool = True
    verbose_container_locator_logs: Bool = False
    proc_root: ConfigPath = DEFAULT_PROC_ROOT

    def config_problems(self) -> Iterable[tuple[str, str]]:
        socket = self.docker_socket_path
        if not (socket.startswith("unix:///") or socket.startswith("/")):
            yield (
                "docker_socket_path",
                (f"expected unix:///path/to/docker.sock or an absolute path, got {socket!r}"),
            )


class K8sWorkloadAttestor(PluginData):
    """`WorkloadAttestor "k8s"`: the caller's pod and container, from the kubelet."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "reload_interval": "the kubelet credentials are read once at start",
        "use_new_container_locator": "Warden's locator handles cgroup v1 and v2 either way",
        "verbose_container_locator_logs": "",
        "enable_namespace_labels": "no k8s:ns-label selectors are produced",
        "disable_kubelet_client": "",
        "experimental": "",
    }
    spire_rejected: ClassVar[Mapping[str, str]] = {"sigstore": _SIGSTORE}

    #: Plain-HTTP read-only port; unset with kubelet_secure_port unset means the secure
    #: port 10250.
    kubelet_read_only_port: Port | None = None
    kubelet_secure_port: Port | None = None
    kubelet_ca_path: ConfigPath = KUBERNETES_CA_PATH
    skip_kubelet_verification: Bool = False
    token_path: ConfigPath = KUBERNETES_TOKEN_PATH
    certificate_path: ConfigPath | None = None
    private_key_path: ConfigPath | None = None
    use_anonymous_authentication: Bool = False
    #: Environment variable with the node name, used to reach the kubelet.
    node_name_env: Str = "MY_NODE_NAME"
    node_name: Str | None = None
    max_poll_attempts: Int = 60
    poll_retry_interval: PositiveDuration = timedelta(milliseconds=500)
    disable_container_selectors: Bool = False
    proc_root: ConfigPath = DEFAULT_PROC_ROOT

    @property
    def kubelet_port(self) -> int:
        """The kubelet port to use: the configured one, or the secure port 10250."""
        if self.kubelet_read_only_port is not None:
            return self.kubelet_read_only_port
        return self.kubelet_secure_port if self.kubelet_secure_port is not None else 10250

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.kubelet_read_only_port is not None and self.kubelet_secure_port is not None:
            yield (
                "kubelet_secure_port",
                "set only one of kubelet_read_only_port and kubelet_secure_port",
            )
        if (self.certificate_path is None) != (self.private_key_path is None):
            missing = "private_key_path" if self.private_key_path is None else "certificate_path"
            yield missing, "set certificate_path and private_key_path together"
        if self.max_poll_attempts < 1:
            yield "max_poll_attempts", "expected 1 or more"

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.skip_kubelet_verification:
            yield (
                "skip_kubelet_verification",
                (
                    "the kubelet's certificate is not verified, so anyone who can answer on the "
                    "kubelet's address can choose the selectors of every workload"
                ),
            )


# --- KeyManager ----------------------------------------------------------------------------


class AgentDiskKeyManager(PluginData):
    """`KeyManager "disk"`: the agent's private key in a file, written with mode 0600."""

    #: Unset means the agent's data_dir.
    directory: ConfigPath | None = None


class AgentMemoryKeyManager(PluginData):
    """`KeyManager "memory"`: the agent's key lives in memory, so each start re-attests."""


# --- The tables ----------------------------------------------------------------------------

AGENT_NODE_ATTESTORS: dict[str, type[PluginData]] = {
    "join_token": JoinTokenAgent,
    "x509pop": X509PopAgent,
    "aws_iid": AwsIidAgent,
}
AGENT_WORKLOAD_ATTESTORS: dict[str, type[PluginData]] = {
    "unix": UnixWorkloadAttestor,
    "docker": DockerWorkloadAttestor,
    "k8s": K8sWorkloadAttestor,
}
AGENT_KEY_MANAGERS: dict[str, type[PluginData]] = {
    "disk": AgentDiskKeyManager,
    "memory": AgentMemoryKeyManager,
}

#: SPIRE's agent plugins (SPIRE 1.x, doc/plugin_agent_*.md), for precise error messages.
SPIRE_AGENT_PLUGINS: dict[str, frozenset[str]] = {
    "KeyManager": frozenset({"disk", "memory"}),
    "NodeAttestor": frozenset(
        {
            "aws_iid",
            "azure_imds",
            "azure_msi",
            "gcp_iit",
            "http_challenge",
            "join_token",
            "k8s_psat",
            "k8s_sat",
            "sshpop",
            "tpm_devid",
            "x509pop",
        }
    ),
    "SVIDStore": frozenset({"aws_secretsmanager", "gcp_secretmanager"}),
    "WorkloadAttestor": frozenset({"docker", "k8s", "slurm", "systemd", "unix", "windows"}),
}

AGENT_PLUGINS = PluginCatalog(
    process="agent",
    implemented={
        "KeyManager": AGENT_KEY_MANAGERS,
        "NodeAttestor": AGENT_NODE_ATTESTORS,
        "WorkloadAttestor": AGENT_WORKLOAD_ATTESTORS,
    },
    spire_names=SPIRE_AGENT_PLUGINS,
)
