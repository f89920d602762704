"""The agent's configuration file, in SPIRE's layout.

agent { trust_domain = "example.org" server_address = "..." trust_bundle_path = "..." }
plugins { NodeAttestor "..." { ... } WorkloadAttestor "unix" { ... } KeyManager "disk" { ... } }
health_checks { ... }
telemetry { Prometheus { ... } }
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, InstanceOf, PlainValidator

from warden.config.agent_plugins import (
    AGENT_PLUGINS,
    AgentDiskKeyManager,
    JoinTokenAgent,
    UnixWorkloadAttestor,
)
from warden.config.common import HealthChecks, Telemetry
from warden.config.decode import DecodeContext, Section, decode_section
from warden.config.errors import Diagnostic
from warden.config.hcl import Block
from warden.config.loader import (
    log_diagnostics,
    parse_text,
    raise_if_problems,
    read_text,
    single_block,
)
from warden.config.plugins import PluginConfig, PluginData, decode_plugins
from warden.config.values import (
    Bool,
    ConfigPath,
    Host,
    Int,
    LogFormat,
    LogLevel,
    Port,
    PositiveDuration,
    Secret,
    TrustDomainName,
    one_of,
)

#: SPIRE's default path of the Workload API socket.
DEFAULT_AGENT_SOCKET = Path("/tmp/spire-agent/public/api.sock")  # noqa: S108

_NO_BUNDLE_SOURCE = (
    "Warden reads the bootstrap bundle from trust_bundle_path only; download the bundle "
    "and set trust_bundle_path"
)
_NO_DELEGATION = "Warden does not implement the Delegated Identity API"


class AgentSettings(Section):
    """`agent { ... }`: the agent process itself."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "trust_bundle_url": _NO_BUNDLE_SOURCE,
        "trust_bundle_unix_socket": _NO_BUNDLE_SOURCE,
        "trust_bundle_spiffe_workload_api": _NO_BUNDLE_SOURCE,
        "admin_socket_path": "Warden's agent has no admin API",
        "authorized_delegates": _NO_DELEGATION,
        "allow_unauthenticated_verifiers": _NO_DELEGATION,
        "allowed_foreign_jwt_claims": "",
        "availability_target": "",
        "jwt_svid_cache_max_size": "",
        "workload_x509_svid_key_type": "workload keys are always EC P-256",
        "rebootstrap_mode": "",
        "rebootstrap_delay": "",
        "log_selectors": "",
        "log_source_location": "",
        "sds": "Warden's agent does not serve Envoy's SDS API",
        "disable_sds_api": "Warden's agent does not serve Envoy's SDS API",
        "experimental": "experimental SPIRE settings have no counterpart in Warden",
        "profiling_enabled": "",
        "profiling_port": "",
        "profiling_freq": "",
        "profiling_names": "",
    }
    spire_rejected: ClassVar[Mapping[str, str]] = {
        "disable_workload_api": (
            "Warden's agent always serves the Workload API, so it cannot honour this setting"
        ),
    }

    trust_domain: TrustDomainName
    server_address: Host = "127.0.0.1"
    server_port: Port = 8081
    #: The Workload API socket; its directory must let workloads connect.
    socket_path: ConfigPath = DEFAULT_AGENT_SOCKET
    data_dir: ConfigPath = Path("data")
    #: The server's CA bundle, used to authenticate the server on first contact.
    trust_bundle_path: ConfigPath | None = None
    trust_bundle_format: Annotated[str, PlainValidator(one_of("pem", "spiffe"))] = "pem"
    join_token: Secret | None = None
    join_token_file: ConfigPath | None = None
    #: Development only: trust the first server that responds, without checking its bundle.
    insecure_bootstrap: Bool = False
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    log_file: ConfigPath | None = None
    #: Most X509-SVIDs the agent keeps; SVIDs that connected workloads use are never dropped.
    x509_svid_cache_max_size: Int = 1000
    #: Warden: Workload API calls per second allowed to each workload; 0 turns the limit off.
    workload_api_rate_limit: Int = 0
    #: Warden: burst of calls above that rate; 0 means one second's worth.
    workload_api_rate_burst: Int = 0
    #: Warden: how often the agent reports to the server when workloads last received SVIDs.
    usage_report_interval: PositiveDuration = timedelta(seconds=30)

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.x509_svid_cache_max_size < 1:
            yield "x509_svid_cache_max_size", "must be at least 1"
        for key in ("workload_api_rate_limit", "workload_api_rate_burst"):
            if getattr(self, key) < 0:
                yield key, "must be 0 (off) or positive"
        if self.join_token is not None and self.join_token_file is not None:
            yield "join_token_file", "set only one of join_token and join_token_file"
        if self.insecure_bootstrap and self.trust_bundle_path is not None:
            yield "insecure_bootstrap", "set only one of insecure_bootstrap and trust_bundle_path"
        if not self.insecure_bootstrap and self.trust_bundle_path is None:
            yield (
                "trust_bundle_path",
                (
                    "missing: set trust_bundle_path to the server's CA bundle, or "
                    "insecure_bootstrap = true for development only"
                ),
            )

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.insecure_bootstrap:
            yield (
                "insecure_bootstrap",
                (
                    "INSECURE: the agent trusts whichever server answers on first contact, so an "
                    "attacker on the network path can impersonate the server and issue identities; "
                    "use this for development only and set trust_bundle_path in production"
                ),
            )

    @property
    def has_join_token(self) -> bool:
        return self.join_token is not None or self.join_token_file is not None

    def read_join_token(self) -> str | None:
        """Return the join token from join_token or join_token_file, or None when neither is set.

        Raises OSError when join_token_file cannot be read.
        """
        if self.join_token is not None:
            return self.join_token.get_secret_value()
        if self.join_token_file is not None:
            return self.join_token_file.read_text(encoding="utf-8").strip()
        return None


@dataclass(frozen=True, slots=True)
class AgentPlugins:
    """The agent's plugins after defaults: one NodeAttestor and KeyManager, the attestors."""

    node_attestor: PluginConfig[PluginData]
    key_manager: PluginConfig[PluginData]
    workload_attestors: tuple[PluginConfig[PluginData], ...]

    def workload_attestor(self, name: str) -> PluginConfig[PluginData] | None:
        """Return the workload attestor called `name`, or None when it is not configured."""
        return next((plugin for plugin in self.workload_attestors if plugin.name == name), None)


class AgentConfig(Section):
    """A loaded agent configuration file. Top-level blocks are fields."""

    agent: AgentSettings
    plugins: InstanceOf[AgentPlugins]
    health_checks: HealthChecks = HealthChecks()
    telemetry: Telemetry = Telemetry()

    #: Warnings found while loading, for `log_warnings` once logging is configured.
    warnings: tuple[Diagnostic, ...] = Field(
        default=(), exclude=True, repr=False, json_schema_extra={"internal": True}
    )
    #: The file the configuration came from, or None when it came from text.
    source: Path | None = Field(default=None, exclude=True, json_schema_extra={"internal": True})

    def log_warnings(self, logger: logging.Logger | None = None) -> None:
        """Log every loading warning through the `warden.config` logger (or `logger`)."""
        log_diagnostics(self.warnings, logger)


def load_agent_config(path: str | Path, expand_env: bool = False) -> AgentConfig:
    """Load and validate an agent configuration file.

    `expand_env` expands `$VAR` and `${VAR}` before parsing, like SPIRE's `-expandEnv`.
    Relative paths in the file are resolved against the file's directory. Raises
    ConfigError with every problem found; warnings are in the result's `warnings`.
    """
    file_path = Path(path)
    text = read_text(file_path)
    config = agent_config_from_text(
        text, file=str(path), base_dir=file_path.absolute().parent, expand_env=expand_env
    )
    return config.model_copy(update={"source": file_path})


def agent_config_from_text(
    text: str, *, file: str = "<text>", base_dir: Path | None = None, expand_env: bool = False
) -> AgentConfig:
    """Load an agent configuration from text, as `load_agent_config` does from a file."""
    root, context = parse_text(text, file, base_dir or Path.cwd(), expand_env)

    if root.get_all("server") and not root.get_all("agent"):
        context.problem(
            root.get_all("server")[0].line,
            "server",
            "this is a server configuration; load it with 'warden server run -config'",
        )
        raise_if_problems(context)

    agent_block = single_block(root, "agent", context)
    settings = None
    if agent_block is not None:
        settings = decode_section(AgentSettings, agent_block, "agent", context)
    elif not root.get_all("agent"):
        context.problem(
            1,
            "agent",
            'missing the agent block; add agent { trust_domain = "example.org" '
            'trust_bundle_path = "bundle.pem" }',
        )

    plugins = None
    plugins_block = single_block(root, "plugins", context)
    if not root.get_all("plugins") or plugins_block is not None:
        problems_before = len(context.problems)
        declared = decode_plugins(plugins_block, AGENT_PLUGINS, context)
        # Counting plugins is only meaningful when every declaration decoded.
        if settings is not None and len(context.problems) == problems_before:
            plugins = _assemble_plugins(declared, settings, plugins_block, context)

    config = decode_section(
        AgentConfig, root, "", context, preset={"agent": settings, "plugins": plugins}
    )
    raise_if_problems(context)
    assert config is not None
    return config.model_copy(update={"warnings": tuple(context.warnings)})


def _assemble_plugins(
    declared: list[PluginConfig[Any]],
    settings: AgentSettings,
    block: Block | None,
    context: DecodeContext,
) -> AgentPlugins | None:
    """Check how many plugins of each kind there are, and add the defaults."""
    by_kind: dict[str, list[PluginConfig[Any]]] = {}
    for plugin in declared:
        by_kind.setdefault(plugin.kind, []).append(plugin)
    block_line = block.line if block is not None else 1

    for kind in ("NodeAttestor", "KeyManager"):
        if len(by_kind.get(kind, [])) > 1:
            lines = ", ".join(str(plugin.line) for plugin in by_kind[kind])
            context.problem(
                by_kind[kind][1].line,
                f"plugins.{kind}",
                f"only one {kind} may be configured (lines {lines})",
            )
            return None

    node_attestor = by_kind.get("NodeAttestor", [None])[0]
    if node_attestor is None:
        if not settings.has_join_token:
            context.problem(
                block_line,
                "plugins.NodeAttestor",
                'missing: add NodeAttestor "join_token" { plugin_data {} } with join_token in '
                "the agent block, or another NodeAttestor",
            )
            return None
        node_attestor = PluginConfig("NodeAttestor", "join_token", JoinTokenAgent(), None)
    elif settings.has_join_token and node_attestor.name != "join_token":
        context.problem(
            node_attestor.line,
            f"plugins.NodeAttestor.{node_attestor.name}",
            "the agent block sets a join token, but this NodeAttestor is not join_token; "
            "remove one of them",
        )
        return None

    key_manager = by_kind.get("KeyManager", [None])[0] or PluginConfig(
        "KeyManager", "disk", AgentDiskKeyManager(), None
    )
    if isinstance(key_manager.data, AgentDiskKeyManager) and key_manager.data.directory is None:
        data = key_manager.data.model_copy(update={"directory": settings.data_dir})
        key_manager = replace(key_manager, data=data)

    workload_attestors = tuple(by_kind.get("WorkloadAttestor", [])) or (
        PluginConfig("WorkloadAttestor", "unix", UnixWorkloadAttestor(), None),
    )
    return AgentPlugins(node_attestor, key_manager, workload_attestors)
