"""The Warden server process: wiring and lifecycle.

`WardenServer.start()` opens the datastore, starts the CA, loads every entry into memory,
signs the server's own SVID, and starts the gRPC services behind the TLS listener and the
admin socket, then the health and metrics listeners. Background tasks rotate the CA and the
server SVID, follow other servers' entry changes, refresh the shared bundle, and batch audit
records and agent sightings. `stop()` undoes it in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.api.server.v1 import admin_pb2, types_pb2
from warden.api.transport import private_socket_dir
from warden.server.audit import AuditWriter
from warden.server.checkpoints import CheckpointWriter
from warden.server.convert import cached_entry, seconds
from warden.server.entry_cache import CachedEntry, EntryCache
from warden.server.follower import EntryFollower
from warden.server.http import HealthStatus, HttpListener, health_app, metrics_app
from warden.server.metrics import Metrics
from warden.server.nodeattest import AttestationResult, build_attestor
from warden.server.nodeattest.base import AttestorContext
from warden.server.nodes import NodeCache
from warden.server.options import ServerOptions
from warden.server.ratelimit import ATTESTATION_PER_SECOND, SIGNING_PER_SECOND, RateLimiter
from warden.server.signing import SigningService, svid_message
from warden.server.signing_pool import SigningPool, default_worker_count
from warden.server.sync import SyncHub
from warden.server.transport import Listeners, Peer, PeerRegistry
from warden.spiffe import SpiffeId, TrustDomain
from warden.spiffe.bundle import Bundle
from warden.store.models import EntrySpec

log = logging.getLogger(__name__)

SERVER_ID_FILE = "server_id"
# The server renews its own SVID when half of its lifetime is left, as agents do.
SERVER_SVID_TTL = timedelta(hours=1)
BUNDLE_POLL_SECONDS = 5.0
PRUNE_SECONDS = 60.0
SEEN_FLUSH_SECONDS = 5.0
# How often the server writes a keyed checkpoint of the audit chain head to data_dir.
CHECKPOINT_SECONDS = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard limit: each agent connection uses
    three descriptors (the TLS socket and both ends of the relay)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open file limit", extra={"error": str(error)})


def read_or_create_server_id(data_dir: Path) -> str:
    """Return the server's stable id, kept in data_dir so that restarts keep its CA journal."""
    path = data_dir / SERVER_ID_FILE
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    temporary = path.with_suffix(".tmp")
    temporary.write_text(value + "\n")
    os.replace(temporary, path)
    return value


class WardenServer:
    def __init__(
        self,
        options: ServerOptions,
        *,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.health = HealthStatus()
        self.peers = PeerRegistry()
        self.cache = EntryCache(str(options.server_spiffe_id))
        self.hub = SyncHub(self.cache, lambda: int(self.clock().timestamp()))
        self.signing = SigningService(self)
        workers = (
            options.signing_workers if options.signing_workers >= 0 else default_worker_count()
        )
        self.signing_pool = SigningPool(workers)
        self.attestors: dict[str, Any] = {}
        self.server_id = ""
        self.datastore: Any = None
        self.ca: Any = None
        self.audit: AuditWriter = None  # type: ignore[assignment]
        self.nodes: NodeCache = None  # type: ignore[assignment]
        self.follower: EntryFollower = None  # type: ignore[assignment]
        self._attestation_limit = RateLimiter(ATTESTATION_PER_SECOND, burst=10)
        self._signing_limit = RateLimiter(SIGNING_PER_SECOND, burst=SIGNING_PER_SECOND)
        self._grpc: grpc.aio.Server | None = None
        self._listeners: Listeners | None = None
        self._http: list[HttpListener] = []
        # The HTTP API and the credential brokers; set at start (see warden.server.httpapi).
        self.credentials: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._private_dir: Path | None = None
        self._bundle: Bundle | None = None
        self._bundle_message = types_pb2.Bundle()
        self._server_svid_expires: datetime | None = None
        self._server_svid_renew_at: datetime | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._started_at = time.monotonic()
        self._stopping = False
        self._admin_socket_bound = False
        self.tls_port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part of the server. When one part fails, stop the parts already
        started and re-raise, so that no listener or gRPC server outlives a failed start."""
        try:
            await self._start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        raise_open_file_limit()
        options.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(options.data_dir, 0o700)
        self.server_id = read_or_create_server_id(options.data_dir)
        log.info(
            "server starting",
            extra={
                "trust_domain": options.trust_domain.name,
                "server_id": self.server_id,
                "path": str(options.data_dir),
            },
        )
        self.datastore = await asyncio.to_thread(self._open_datastore)
        self.audit = AuditWriter(
            self.datastore.append_audit,
            server_id=self.server_id,
            batch_size=options.audit_batch_size,
            flush_interval=options.audit_flush_interval,
        )
        self.audit.start()
        self.checkpoints = CheckpointWriter(
            options.data_dir, self.server_id, self.datastore.audit_head
        )
        self.nodes = NodeCache(self.datastore, self.clock)
        self.ca = await asyncio.to_thread(self._start_ca)
        await self._refresh_bundle(force=True)
        self._build_attestors()
        await self._load_entries()
        self._private_dir = private_socket_dir("warden-server-")
        await self._renew_server_svid()

        grpc_socket = self._private_dir / "grpc.sock"
        self._grpc = self._build_grpc_server()
        self._grpc.add_insecure_port(f"unix:{grpc_socket}")
        await self._grpc.start()
        self._listeners = Listeners(
            self.peers, grpc_socket, lambda: self._current_tls_context(), self._is_own_domain
        )
        self.tls_port = await self._listeners.start_tls(options.bind_address, options.bind_port)
        await self._listeners.start_admin_socket(options.socket_path)
        self._admin_socket_bound = True
        await self._start_http()
        await self._start_credentials()

        self._tasks = [
            asyncio.create_task(
                self._every(options.rotation_interval, self._rotate), name="rotation"
            ),
            asyncio.create_task(
                self._every(BUNDLE_POLL_SECONDS, self._refresh_bundle), name="bundle-poll"
            ),
            asyncio.create_task(
                self._every(SEEN_FLUSH_SECONDS, self.nodes.flush_seen), name="agents-seen"
            ),
            asyncio.create_task(self._every(PRUNE_SECONDS, self._prune), name="prune"),
            asyncio.create_task(
                self._every(CHECKPOINT_SECONDS, self._checkpoint), name="audit-checkpoints"
            ),
        ]
        self.metrics.started.set(time.time())
        self.health.set(live=True, ready=True)
        log.info(
            "server started",
            extra={
                "address": f"{options.bind_address}:{self.tls_port}",
                "path": str(options.socket_path),
                "entries": len(self.cache),
            },
        )

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.health.set(ready=False)
        log.info("server stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for listener in self._http:
            await listener.stop()
        if self.credentials is not None:
            await self.credentials.stop()
        if self._listeners is not None:
            await self._listeners.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        await asyncio.to_thread(self.signing_pool.close)
        if self.follower is not None:
            await self.follower.stop()
        if self.nodes is not None:
            with contextlib.suppress(Exception):
                await self.nodes.flush_seen()
        if self.audit is not None:
            await self.audit.stop()
            with contextlib.suppress(Exception):
                await self._checkpoint()
        if self.datastore is not None:
            await asyncio.to_thread(self.datastore.close)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        if self._admin_socket_bound:
            # Only a socket this server bound is removed: a start that failed because
            # another server listens there must leave that server reachable.
            with contextlib.suppress(OSError):
                self.options.socket_path.unlink()
        log.info("server stopped")

    async def __aenter__(self) -> WardenServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking datastore call in a worker thread."""
        return await asyncio.to_thread(function, *args, **kwargs)

    async def _every(self, interval: float, action: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error(
                    "background task failed",
                    extra={"task": getattr(action, "__name__", "?"), "error": str(error)},
                )

    # -- construction -------------------------------------------------------------------------

    def _open_datastore(self) -> Any:
        from warden.store import Datastore

        return Datastore.open(
            self.options.datastore_url, server_id=self.server_id, clock=self.clock
        )

    def _start_ca(self) -> Any:
        from warden.server.authority import start_authority

        return start_authority(self.options, self.server_id, self.datastore, self.clock)

    def _build_attestors(self) -> None:
        context = AttestorContext(self.options.trust_domain, self.clock, self.datastore)
        for name, plugin_data in self.options.node_attestors.items():
            self.attestors[name] = build_attestor(name, plugin_data, context)
            log.info("node attestor configured", extra={"attestor": name})
        if not self.attestors:
            log.warning(
                'no NodeAttestor is configured: agents cannot attest; add NodeAttestor "join_token"'
            )

    async def _load_entries(self) -> None:
        started = time.monotonic()
        last_event = await asyncio.to_thread(self.datastore.latest_entry_event_id)

        def load() -> int:
            count = 0
            for entry in self.datastore.iter_all_entries():
                self.cache.upsert(cached_entry(entry))
                count += 1
            return count

        count = await asyncio.to_thread(load)
        self.follower = EntryFollower(
            self.datastore, self.cache, self._entries_changed, self.options.event_poll_interval
        )
        self.follower.start(last_event)
        log.info(
            "entries loaded",
            extra={"entries": count, "seconds": round(time.monotonic() - started, 2)},
        )

    def _build_grpc_server(self) -> grpc.aio.Server:
        from warden.server.metrics import RpcMetricsInterceptor
        from warden.server.services.admin import add_admin_services
        from warden.server.services.agent import add_agent_service

        server = grpc.aio.server(
            interceptors=[
                RpcMetricsInterceptor(
                    self.metrics, self._describe_caller if self.options.log_api_calls else None
                )
            ],
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                # Close connections that carry no call for five minutes.
                ("grpc.max_connection_idle_ms", 300_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ],
        )
        add_agent_service(server, self)
        add_admin_services(server, self)
        return server

    async def _start_http(self) -> None:
        options = self.options
        if options.health_checks_enabled:
            listener = HttpListener(
                health_app(options.live_path, options.ready_path, self.health),
                options.health_bind_address,
                options.health_bind_port,
                "health checks",
            )
            await listener.start()
            self._http.append(listener)
        if options.prometheus_port is not None:
            listener = HttpListener(
                metrics_app(self.metrics.registry),
                options.prometheus_host or "localhost",
                options.prometheus_port,
                "metrics",
            )
            await listener.start()
            self._http.append(listener)

    async def _start_credentials(self) -> None:
        options = self.options
        if options.http_api is None and options.database is None:
            return
        from warden.server.httpapi import CredentialsRuntime

        self.credentials = CredentialsRuntime(self)
        await self.credentials.start()

    # -- TLS and bundles ------------------------------------------------------------------------

    def _describe_caller(self, context: Any) -> str:
        peer = self.peers.lookup(context)
        return peer.describe() if peer is not None else "unknown"

    def _is_own_domain(self, spiffe_id: SpiffeId) -> bool:
        return spiffe_id.trust_domain == self.options.trust_domain

    def _current_tls_context(self) -> ssl.SSLContext:
        assert self._tls_context is not None
        return self._tls_context

    def _build_tls_context(self, chain: list[Any], key: Any) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # Agents attest without a client certificate and present their SVID afterwards.
        context.verify_mode = ssl.CERT_OPTIONAL
        assert self._bundle is not None
        context.load_verify_locations(cadata=self._bundle.to_pem())
        directory = self._private_dir
        assert directory is not None, "the private directory is created before the first SVID"
        cert_path = directory / "server-svid.pem"
        key_path = directory / "server-key.pem"
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        context.load_cert_chain(cert_path, key_path)
        key_path.unlink()
        context.set_alpn_protocols(["h2"])
        return context

    async def _renew_server_svid(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = self.clock()
        chain = self.ca.sign_x509_svid(
            self.options.server_spiffe_id,
            key.public_key(),
            ttl=SERVER_SVID_TTL,
            dns_names=[],
            now=now,
        )
        self._server_svid_expires = chain[0].not_valid_after_utc
        self._server_svid_renew_at = now + (self._server_svid_expires - now) / 2
        self._server_chain, self._server_key = chain, key
        self._tls_context = self._build_tls_context(chain, key)
        log.info(
            "server SVID renewed",
            extra={
                "spiffe_id": str(self.options.server_spiffe_id),
                "serial": format(chain[0].serial_number, "x"),
            },
        )

    async def _refresh_bundle(self, force: bool = False) -> None:
        """Read the shared bundle; on change tell the sync streams and rebuild TLS."""
        data = await asyncio.to_thread(self.datastore.get_bundle, self.options.trust_domain.name)
        if data is None:
            return
        bundle = Bundle.from_jwks_json(self.options.trust_domain, data)
        if (
            not force
            and self._bundle is not None
            and bundle.sequence_number == self._bundle.sequence_number
        ):
            return
        self._bundle = bundle
        self._bundle_message = types_pb2.Bundle(
            trust_domain=self.options.trust_domain.name,
            spiffe_json=bundle.to_jwks_json().encode(),
            sequence=bundle.sequence_number or 0,
        )
        if self._tls_context is not None:
            self._tls_context = self._build_tls_context(self._server_chain, self._server_key)
        self.hub.bundle_changed()
        log.info(
            "trust bundle loaded",
            extra={
                "trust_domain": self.options.trust_domain.name,
                "sequence": bundle.sequence_number,
            },
        )

    def bundle_message(self) -> types_pb2.Bundle:
        return self._bundle_message

    @property
    def bundle(self) -> Bundle:
        assert self._bundle is not None
        return self._bundle

    async def _rotate(self) -> None:
        now = self.clock()
        with self.metrics.call("ca", "manager", "rotate"):
            changed = await asyncio.to_thread(self.ca.rotate, now)
        if changed:
            self.metrics.count("ca", "manager", "bundle", "changed")
            await self._refresh_bundle(force=True)
        if self._server_svid_renew_at is not None and now >= self._server_svid_renew_at:
            await self._renew_server_svid()
        self.metrics.uptime.set((time.monotonic() - self._started_at) * 1000)

    async def _checkpoint(self) -> None:
        await asyncio.to_thread(self.checkpoints.write, self.clock())

    async def _prune(self) -> None:
        now = self.clock()
        await asyncio.to_thread(self.datastore.prune_join_tokens, now - timedelta(days=1))

    # -- entries --------------------------------------------------------------------------------

    def _entries_changed(self, changed: list[CachedEntry]) -> None:
        self.hub.entries_changed(changed)

    async def entries_written(self, entry_ids: Iterable[str]) -> None:
        """Apply this server's own entry writes to the cache now, not at the next poll."""
        await self.follower.apply(entry_ids)

    async def entry_deleted(self, entry: Any, actor: str) -> None:
        """Revoke the credential leases of the entry's SPIFFE ID if no other entry carries it."""
        if self.credentials is not None:
            await self.credentials.entry_deleted(entry, actor)

    def check_entry_ttls(self, message: Any) -> None:
        """Reject what the datastore cannot know is wrong: IDs of another trust domain."""
        self._check_own_domain_id(message.spiffe_id, "entry SPIFFE ID")
        self._check_own_domain_id(message.parent_id, f"parent ID of entry {message.spiffe_id}")
        for name in ("x509_svid_ttl", "jwt_svid_ttl"):
            value = getattr(message, name)
            if value < 0:
                raise ValueError(f"entry {message.spiffe_id}: {name} {value} must not be negative")

    def is_admin_spiffe_id(self, spiffe_id: str) -> bool:
        return any(entry.admin and entry.spiffe_id == spiffe_id for entry in self.cache)

    # -- agents ---------------------------------------------------------------------------------

    def allow_attestation(self, host: str) -> bool:
        return not self.options.ratelimit_attestation or self._attestation_limit.allow(host)

    def allow_signing(self, host: str, count: int) -> bool:
        return not self.options.ratelimit_signing or self._signing_limit.allow(host, count)

    def agent_removed(self, spiffe_id: str, reason: str) -> None:
        self.nodes.invalidate(spiffe_id)
        self.hub.agent_removed(spiffe_id, reason)

    async def attest_node(
        self, result: AttestationResult, attestation_type: str, public_key: Any, peer: Peer
    ) -> tuple[types_pb2.X509SVID, types_pb2.Bundle]:
        """Record a successful attestation and sign the agent's SVID."""
        now = self.clock()
        agent_id = result.agent_id
        chain = self.ca.sign_x509_svid(
            agent_id, public_key, ttl=self.options.agent_svid_ttl, dns_names=[], now=now
        )
        owner = result.owner or "unassigned"
        node = await asyncio.to_thread(
            self.datastore.record_attestation,
            str(agent_id),
            attestation_type=attestation_type,
            serial_number=format(chain[0].serial_number, "x"),
            expires_at=chain[0].not_valid_after_utc,
            owner=owner,
            selectors=[str(s) for s in result.selectors],
            can_reattest=result.reattestable,
            actor=str(agent_id),
            details={"address": peer.host, **result.details},
        )
        self.nodes.put(node)
        self.hub.agent_selectors_changed(
            str(agent_id), frozenset(f"{s.type}:{s.value}" for s in node.selectors)
        )
        alias = result.details.get("alias_spiffe_id")
        if isinstance(alias, str) and alias:
            await self._create_alias_entry(agent_id, alias, owner)
        self.metrics.count("node_attestor", "attested")
        log.info(
            "agent attested",
            extra={
                "agent_id": str(agent_id),
                "attestor": attestation_type,
                "address": peer.host,
                "identity": owner,
            },
        )
        return svid_message(str(agent_id), chain), self.bundle_message()

    async def renew_agent(self, spiffe_id: str, public_key: Any) -> types_pb2.X509SVID:
        now = self.clock()
        chain = self.ca.sign_x509_svid(
            SpiffeId.parse(spiffe_id),
            public_key,
            ttl=self.options.agent_svid_ttl,
            dns_names=[],
            now=now,
        )
        node = await asyncio.to_thread(
            self.datastore.update_node_svid,
            spiffe_id,
            new_serial_number=format(chain[0].serial_number, "x"),
            new_expires_at=chain[0].not_valid_after_utc,
        )
        self.nodes.put(node)
        from warden.store.models import AuditEvent

        await self.audit.record(
            AuditEvent(
                action="agent.renew",
                actor=spiffe_id,
                subject=spiffe_id,
                details={
                    "serial": format(chain[0].serial_number, "x"),
                    "expires_at": chain[0].not_valid_after_utc.isoformat(),
                },
            )
        )
        log.info(
            "agent SVID renewed",
            extra={"agent_id": spiffe_id, "serial": format(chain[0].serial_number, "x")},
        )
        return svid_message(spiffe_id, chain)

    async def create_join_token(
        self, *, owner: str, actor: str, ttl: timedelta, alias: str | None
    ) -> admin_pb2.JoinToken:
        """Create a join token. Its alias entry is created when an agent uses it, so that the
        token, which is part of the agent's SPIFFE ID, is never stored while it still works."""
        if alias:
            self._check_own_domain_id(alias, "alias SPIFFE ID")
        value, record = await asyncio.to_thread(
            self.datastore.create_join_token,
            owner=owner,
            actor=actor,
            ttl=ttl,
            alias_spiffe_id=alias,
        )
        return admin_pb2.JoinToken(
            value=value, expires_at=seconds(record.expires_at), owner=record.owner
        )

    async def _create_alias_entry(self, agent_id: SpiffeId, alias: str, owner: str) -> None:
        """Give a node the alias of its join token, as `token generate -spiffeID` requests."""
        try:
            entry = await asyncio.to_thread(
                self.datastore.create_entry,
                EntrySpec(
                    spiffe_id=alias,
                    parent_id=str(agent_id),
                    selectors=[f"spiffe_id:{agent_id}"],
                    owner=owner,
                    description="node alias from the agent's join token",
                ),
                actor="server",
            )
        except Exception as error:
            log.error(
                "cannot create the join token's alias entry",
                extra={"agent_id": str(agent_id), "spiffe_id": alias, "error": str(error)},
            )
            return
        await self.entries_written([entry.id])

    def _check_own_domain_id(self, spiffe_id: str, what: str) -> None:
        from warden.store.errors import InvalidInput

        try:
            parsed = SpiffeId.parse(spiffe_id)
        except ValueError as error:
            raise InvalidInput(f"invalid {what}: {error}") from None
        if parsed.trust_domain != self.options.trust_domain:
            raise InvalidInput(
                f"{what} {spiffe_id} is not in this server's trust domain "
                f"{self.options.trust_domain.name}"
            )

    # -- health ---------------------------------------------------------------------------------

    async def health_check(self) -> tuple[bool, bool, str]:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.datastore.latest_entry_event_id), 5)
        except Exception as error:
            return True, False, f"datastore unreachable: {error}"
        live, _ = self.health.live()
        ready, _ = self.health.ready()
        return live, ready, ""


__all__ = ["TrustDomain", "WardenServer"]
