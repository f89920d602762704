"""The server's configuration file: SPIRE's layout, plus Warden's own blocks.

    server { trust_domain = "example.org" ... }
    plugins { DataStore "sql" { ... } KeyManager "disk" { ... } NodeAttestor "..." { ... } }
    health_checks { ... }
    telemetry { Prometheus { ... } }
    http_api { ... }

Each top-level block is one field of `ServerConfig` and one `Section` model, so adding a
block (token_exchange, database) is one model class and one line there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, InstanceOf, SecretStr, field_validator

from warden.config.common import HealthChecks, Telemetry
from warden.config.credentials import Database, TokenExchange
from warden.config.decode import DecodeContext, Section, decode_section
from warden.config.duration import format_duration
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
from warden.config.server_plugins import (
    SERVER_PLUGINS,
    ServerDiskKeyManager,
    SqlDataStore,
)
from warden.config.values import (
    Bool,
    ConfigPath,
    Host,
    Int,
    KeyType,
    ListenPort,
    LogFormat,
    LogLevel,
    PositiveDuration,
    SpiffeIdList,
    Str,
    StrList,
    TrustDomainName,
)

#: SPIRE's default path of the server's admin API socket.
DEFAULT_SERVER_SOCKET = Path("/tmp/spire-server/private/api.sock")  # noqa: S108
#: SPIRE's CA subject when none is configured.
DEFAULT_CA_COUNTRY = ("US",)
DEFAULT_CA_ORGANIZATION = ("SPIFFE",)
#: SPIRE's limits: the next CA activates when a sixth of the current one's lifetime
#: remains, and never more than seven days ahead. An SVID longer than that may be cut short.
_ACTIVATION_DIVISOR = 6
_ACTIVATION_CAP = timedelta(days=7)


class CASubject(Section):
    """`ca_subject { ... }`: the subject of the CA certificates."""

    country: StrList = ()
    organization: StrList = ()
    common_name: Str = ""

    @property
    def is_empty(self) -> bool:
        return not self.country and not self.organization and not self.common_name

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.is_empty:
            yield "", "the subject is empty, so the default C=US, O=SPIFFE is used"


class RateLimit(Section):
    """`ratelimit { ... }`: per-client-address rate limits of the server API."""

    #: One node attestation per second per address.
    attestation: Bool = True
    #: 500 X509-SVID and 500 JWT-SVID signatures per second per address.
    signing: Bool = True


_EXPERIMENTAL = "experimental SPIRE settings have no counterpart in Warden"


class ServerSettings(Section):
    """`server { ... }`: the server process itself."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "federation": (
            "Warden does not implement federation yet: this server neither serves a bundle "
            "endpoint nor fetches the bundles of other trust domains"
        ),
        "experimental": _EXPERIMENTAL,
        "log_source_location": "",
        "prune_attested_nodes_expired_for": "expired agents are kept",
        "prune_attested_nodes_batch_size": "expired agents are kept",
        "prune_tofu_nodes": "expired agents are kept",
        "proxy_protocol_trusted_cidrs": (
            "the server does not accept PROXY protocol headers, so rate limits see the "
            "load balancer's address"
        ),
        "max_attested_node_info_staleness": "",
        "profiling_enabled": "",
        "profiling_port": "",
        "profiling_freq": "",
        "profiling_names": "",
    }

    trust_domain: TrustDomainName
    bind_address: Host = "0.0.0.0"  # noqa: S104  (SPIRE's default: agents connect from other hosts)
    bind_port: ListenPort = 8081
    #: Unix socket of the admin API; its directory is created with mode 0700.
    socket_path: ConfigPath = DEFAULT_SERVER_SOCKET
    data_dir: ConfigPath = Path("data")
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    log_file: ConfigPath | None = None
    ca_ttl: PositiveDuration = timedelta(hours=24)
    default_x509_svid_ttl: PositiveDuration = timedelta(hours=1)
    default_jwt_svid_ttl: PositiveDuration = timedelta(minutes=5)
    #: TTL of agent SVIDs; None means default_x509_svid_ttl.
    agent_ttl: PositiveDuration | None = None
    ca_key_type: KeyType = "ec-p256"
    #: Key type of the JWT signing key; None means ca_key_type.
    jwt_key_type: KeyType | None = None
    #: Warden: key type of the OIDC federation token keys. RSA by default, because Azure
    #: accepts RSA only; ec-p256 signs ES256 tokens for AWS and GCP.
    federation_key_type: KeyType = "rsa-2048"
    ca_subject: CASubject = CASubject(
        country=DEFAULT_CA_COUNTRY, organization=DEFAULT_CA_ORGANIZATION
    )
    #: `iss` claim of JWT-SVIDs; None leaves the claim out, as SPIRE does.
    jwt_issuer: Str | None = None
    admin_ids: SpiffeIdList = ()
    audit_log_enabled: Bool = False
    #: Warden: processes that sign X509-SVIDs beside the server process, so that signing
    #: uses every core; -1 starts one per core (none on a single core), 0 signs in-process.
    signing_workers: Int = -1
    disable_jwt_svids: Bool = False
    ratelimit: RateLimit = RateLimit()

    @field_validator("ca_subject", mode="after")
    @classmethod
    def _default_subject_when_empty(cls, subject: CASubject) -> CASubject:
        if subject.is_empty:
            return CASubject(country=DEFAULT_CA_COUNTRY, organization=DEFAULT_CA_ORGANIZATION)
        return subject

    @property
    def effective_agent_ttl(self) -> timedelta:
        return self.agent_ttl if self.agent_ttl is not None else self.default_x509_svid_ttl

    @property
    def effective_jwt_key_type(self) -> str:
        return self.jwt_key_type if self.jwt_key_type is not None else self.ca_key_type

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        longest = min(self.ca_ttl / _ACTIVATION_DIVISOR, _ACTIVATION_CAP)
        for key in ("default_x509_svid_ttl", "default_jwt_svid_ttl", "agent_ttl"):
            ttl = getattr(self, key)
            if ttl is not None and ttl > longest:
                shortest_ca_ttl = min(ttl, _ACTIVATION_CAP) * _ACTIVATION_DIVISOR
                ttl_text, longest_text = format_duration(ttl), format_duration(longest)
                message = (
                    f"{ttl_text} is longer than the {longest_text} that ca_ttl "
                    f"{format_duration(self.ca_ttl)} guarantees across CA rotations, so some "
                    f"SVIDs will be shorter; set {key} to at most {longest_text} or ca_ttl "
                    f"to at least {format_duration(shortest_ca_ttl)}"
                )
                yield key, message
        if self.jwt_issuer is not None and not self.jwt_issuer.startswith("https://"):
            yield (
                "jwt_issuer",
                (
                    "cloud providers accept only an https:// issuer for OIDC federation; "
                    f"{self.jwt_issuer!r} will not be accepted there"
                ),
            )


class HttpApi(Section):
    """Warden: `http_api { ... }`, the HTTP endpoints (OIDC discovery, JWKS, token exchange)."""

    bind_address: Host = "127.0.0.1"
    bind_port: ListenPort = 8443
    #: PEM certificate chain and key for HTTPS; both unset serves plain HTTP, for use
    #: behind a proxy that terminates TLS.
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            yield missing, "set cert_file and key_file together, or neither for plain HTTP"

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.cert_file is None and self.bind_address not in ("127.0.0.1", "localhost", "::1"):
            yield (
                "bind_address",
                (
                    f"plain HTTP on {self.bind_address}; set cert_file and key_file, or keep "
                    "the listener on 127.0.0.1 behind a proxy that terminates TLS"
                ),
            )


@dataclass(frozen=True, slots=True)
class ServerPlugins:
    """The server's plugins after defaults: one DataStore and KeyManager, the attestors."""

    datastore: PluginConfig[SqlDataStore]
    key_manager: PluginConfig[PluginData]
    node_attestors: tuple[PluginConfig[PluginData], ...] = ()
    upstream_authority: PluginConfig[PluginData] | None = None

    def node_attestor(self, name: str) -> PluginConfig[PluginData] | None:
        """Return the node attestor called `name`, or None when it is not configured."""
        return next((plugin for plugin in self.node_attestors if plugin.name == name), None)


class ServerConfig(Section):
    """A loaded server configuration file. Top-level blocks are fields; see the module doc."""

    server: ServerSettings
    plugins: InstanceOf[ServerPlugins]
    health_checks: HealthChecks = HealthChecks()
    telemetry: Telemetry = Telemetry()
    http_api: HttpApi | None = None
    token_exchange: TokenExchange | None = None
    database: Database | None = None

    #: Warnings found while loading, for `log_warnings` once logging is configured.
    warnings: tuple[Diagnostic, ...] = Field(
        default=(), exclude=True, repr=False, json_schema_extra={"internal": True}
    )
    #: The file the configuration came from, or None when it came from text.
    source: Path | None = Field(default=None, exclude=True, json_schema_extra={"internal": True})

    def log_warnings(self, logger: logging.Logger | None = None) -> None:
        """Log every loading warning through the `warden.config` logger (or `logger`).

        The server calls this after configuring logging from this configuration, so that
        the warnings reach the configured log in the configured format.
        """
        log_diagnostics(self.warnings, logger)


def load_server_config(path: str | Path, expand_env: bool = False) -> ServerConfig:
    """Load and validate a server configuration file.

    `expand_env` expands `$VAR` and `${VAR}` before parsing, like SPIRE's `-expandEnv`.
    Relative paths in the file are resolved against the file's directory. Raises
    ConfigError with every problem found; warnings are in the result's `warnings`.
    """
    file_path = Path(path)
    text = read_text(file_path)
    config = server_config_from_text(
        text, file=str(path), base_dir=file_path.absolute().parent, expand_env=expand_env
    )
    return config.model_copy(update={"source": file_path})


def server_config_from_text(
    text: str, *, file: str = "<text>", base_dir: Path | None = None, expand_env: bool = False
) -> ServerConfig:
    """Load a server configuration from text, as `load_server_config` does from a file.

    `file` names the text in diagnostics; `base_dir` resolves relative paths (the working
    directory when None).
    """
    root, context = parse_text(text, file, base_dir or Path.cwd(), expand_env)

    if root.get_all("agent") and not root.get_all("server"):
        context.problem(
            root.get_all("agent")[0].line,
            "agent",
            "this is an agent configuration; load it with 'warden agent run -config'",
        )
        raise_if_problems(context)

    server_block = single_block(root, "server", context)
    settings = None
    if server_block is not None:
        settings = decode_section(ServerSettings, server_block, "server", context)
    elif not root.get_all("server"):
        context.problem(
            1, "server", 'missing the server block; add server { trust_domain = "example.org" }'
        )

    plugins = None
    plugins_block = single_block(root, "plugins", context)
    if not root.get_all("plugins") or plugins_block is not None:
        problems_before = len(context.problems)
        declared = decode_plugins(plugins_block, SERVER_PLUGINS, context)
        # Counting plugins is only meaningful when every declaration decoded.
        if settings is not None and len(context.problems) == problems_before:
            plugins = _assemble_plugins(declared, settings.data_dir, plugins_block, context)

    config = decode_section(
        ServerConfig, root, "", context, preset={"server": settings, "plugins": plugins}
    )
    raise_if_problems(context)
    assert config is not None
    return config.model_copy(update={"warnings": tuple(context.warnings)})


def _assemble_plugins(
    declared: list[PluginConfig[Any]],
    data_dir: Path,
    block: Block | None,
    context: DecodeContext,
) -> ServerPlugins | None:
    """Check how many plugins of each kind there are, and add the defaults."""
    by_kind: dict[str, list[PluginConfig[Any]]] = {}
    for plugin in declared:
        by_kind.setdefault(plugin.kind, []).append(plugin)
    for kind in ("DataStore", "KeyManager", "UpstreamAuthority"):
        if len(by_kind.get(kind, [])) > 1:
            lines = ", ".join(str(plugin.line) for plugin in by_kind[kind])
            context.problem(
                by_kind[kind][1].line,
                f"plugins.{kind}",
                f"only one {kind} may be configured (lines {lines})",
            )
            return None

    datastore = by_kind.get("DataStore", [None])[0] or PluginConfig(
        "DataStore", "sql", SqlDataStore(database_type="sqlite3"), None
    )
    if datastore.data.connection_string is None:
        default_database = SecretStr(str(data_dir / "datastore.sqlite3"))
        datastore = replace(
            datastore,
            data=datastore.data.model_copy(update={"connection_string": default_database}),
        )

    key_manager = by_kind.get("KeyManager", [None])[0] or PluginConfig(
        "KeyManager", "disk", ServerDiskKeyManager(), None
    )
    if isinstance(key_manager.data, ServerDiskKeyManager) and key_manager.data.keys_path is None:
        keys_path = data_dir / "keys.json"
        key_manager = replace(
            key_manager, data=key_manager.data.model_copy(update={"keys_path": keys_path})
        )

    node_attestors = tuple(by_kind.get("NodeAttestor", []))
    if not node_attestors:
        context.warn(
            block.line if block is not None else 1,
            "plugins",
            "no NodeAttestor is configured, so no agent can attest; add "
            'NodeAttestor "join_token" { plugin_data {} }',
        )
    upstream = by_kind.get("UpstreamAuthority", [None])[0]
    return ServerPlugins(datastore, key_manager, node_attestors, upstream)
