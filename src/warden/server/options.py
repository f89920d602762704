"""The server's settings as the running process uses them.

`ServerOptions` is built from a loaded configuration file (`from_config`) or directly by
tests, the demo and `warden dev`. Every field has a default that works on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warden.spiffe import SpiffeId, TrustDomain

if TYPE_CHECKING:
    from warden.credentials import DatabaseSettings, TokenExchangeSettings

DEFAULT_SOCKET_PATH = Path("/tmp/spire-server/private/api.sock")  # noqa: S108 - SPIRE's default


@dataclass(frozen=True)
class UpstreamDisk:
    """An operator's CA on disk, under which the server's CA is an intermediate."""

    cert_file_path: Path
    key_file_path: Path
    bundle_file_path: Path | None = None


@dataclass(frozen=True)
class HttpApiOptions:
    """The HTTP API listener; without cert_file and key_file it serves plain HTTP."""

    bind_address: str = "127.0.0.1"
    bind_port: int = 8443
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class ServerOptions:
    trust_domain: TrustDomain
    data_dir: Path
    bind_address: str = "0.0.0.0"  # noqa: S104 - agents on other nodes must reach the server
    bind_port: int = 8081
    socket_path: Path = DEFAULT_SOCKET_PATH
    log_level: str = "info"
    log_format: str = "text"
    log_file: Path | None = None

    ca_ttl: timedelta = timedelta(hours=24)
    default_x509_svid_ttl: timedelta = timedelta(hours=1)
    default_jwt_svid_ttl: timedelta = timedelta(minutes=5)
    # Lifetime of agent SVIDs; SPIRE defaults it to the X509-SVID default.
    agent_ttl: timedelta | None = None
    ca_key_type: str = "ec-p256"
    jwt_key_type: str = "ec-p256"
    federation_key_type: str = "rsa-2048"
    ca_subject: dict[str, str] = field(default_factory=dict)
    jwt_issuer: str = ""
    admin_ids: tuple[SpiffeId, ...] = ()

    # Datastore: a URL or SPIRE connection string; empty means SQLite in data_dir.
    datastore: str = ""
    datastore_type: str = "sqlite3"
    # False for a server that runs as a restricted role after an operator migrated the schema.
    datastore_migrate: bool = True
    key_manager: str = "disk"
    keys_path: Path | None = None
    upstream: UpstreamDisk | None = None
    node_attestors: dict[str, dict[str, Any]] = field(default_factory=dict)

    health_checks_enabled: bool = False
    health_bind_address: str = "localhost"
    health_bind_port: int = 80
    live_path: str = "/live"
    ready_path: str = "/ready"
    prometheus_host: str | None = None
    prometheus_port: int | None = None

    # The HTTP API and the credential brokers (warden.server.httpapi); None means off.
    http_api: HttpApiOptions | None = None
    token_exchange: TokenExchangeSettings | None = None
    database: DatabaseSettings | None = None
    database_sweep_interval: timedelta = timedelta(seconds=5)

    disable_jwt_svids: bool = False
    # Log one line per API call, as SPIRE's audit_log_enabled does.
    log_api_calls: bool = False
    # Processes that sign X509-SVIDs beside the server process; -1 means one per core.
    signing_workers: int = 0
    ratelimit_attestation: bool = True
    ratelimit_signing: bool = True
    join_token_ttl: timedelta = timedelta(seconds=600)

    # How often the server reads the entry change log for other servers' changes.
    event_poll_interval: float = 0.2
    # How often the CA manager checks whether to prepare, activate or prune.
    rotation_interval: float = 10.0
    # Largest batch of audit records written in one transaction, and the longest wait.
    audit_batch_size: int = 500
    audit_flush_interval: float = 0.005

    @property
    def server_spiffe_id(self) -> SpiffeId:
        return SpiffeId.from_segments(self.trust_domain, "spire", "server")

    @property
    def agent_svid_ttl(self) -> timedelta:
        return self.agent_ttl or self.default_x509_svid_ttl

    @property
    def datastore_url(self) -> str | Path:
        if self.datastore:
            return self.datastore
        return self.data_dir / "datastore.sqlite3"
