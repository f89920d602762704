"""The agent process: node attestation, the agent SVID, entry sync and the Workload API.

Start-up uses the agent SVID stored in `data_dir` when it is still valid, and attests the node
otherwise. Then three loops run beside the Workload API:

- entry sync: follows the server's entry stream and feeds the manager. While the server is
  unreachable it reconnects with exponential backoff (1 s doubling to 30 s, with jitter),
  and workloads keep receiving cached SVIDs until they expire;
- agent SVID renewal: at half of the SVID's lifetime, with a new key; an SVID that expired
  while the server was unreachable is replaced by attesting again when the node attestor
  allows it;
- delivery reports: batched to the server (see `warden.agent.usage`).

An agent the server has evicted or banned stops and says why; after an eviction it forgets
its SVID, so the next start attests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from warden.agent.attestor import CompositeAttestor, WorkloadAttestor
from warden.agent.endpoint import WorkloadEndpoint
from warden.agent.listener import prepare_socket_path
from warden.agent.manager import DEFAULT_MAX_SVIDS, EntryUpdate, Manager
from warden.agent.nodeattest import NodeAttestationError, NodeAttestorClient
from warden.agent.observability import AgentObservability, ListenerSettings
from warden.agent.ratelimit import RateLimit
from warden.agent.serverapi import AgentRejectedError, ServerConnection, ServerUnavailableError
from warden.agent.state import (
    KEY_IDS,
    AgentIdentity,
    StateStore,
    check_chain_key,
    new_key,
    other_key_id,
)
from warden.agent.svid import SigningError
from warden.agent.usage import DEFAULT_REPORT_INTERVAL_SECONDS, UsageRecorder
from warden.api.transport import ClientCredentials
from warden.pki.keys import KeyManager, PrivateKey
from warden.spiffe import Bundle, TrustDomain

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


class AgentStartError(Exception):
    """The agent cannot start. The message gives the reason and what to do."""


@dataclass
class AgentOptions:
    """Everything the agent runs with, already validated (see `warden.agent.main`)."""

    trust_domain: TrustDomain
    server_host: str
    server_port: int
    socket_path: Path
    data_dir: Path
    node_attestor: NodeAttestorClient
    key_manager: KeyManager
    workload_attestors: list[WorkloadAttestor]
    #: The server's bundle for first contact; None with `insecure_bootstrap`.
    bootstrap_bundle: Bundle | None = None
    insecure_bootstrap: bool = False
    rate_limit: RateLimit = field(default_factory=RateLimit)
    max_svids: int = DEFAULT_MAX_SVIDS
    usage_interval: float = DEFAULT_REPORT_INTERVAL_SECONDS
    retry_max: float = RETRY_MAX_SECONDS
    #: `health_checks` and `telemetry { Prometheus { } }` listeners; None turns one off.
    health_listener: ListenerSettings | None = None
    live_path: str = "/live"
    ready_path: str = "/ready"
    prometheus_listener: ListenerSettings | None = None


def _csr(key: PrivateKey) -> bytes:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def _backoff(delay: float, maximum: float) -> float:
    """Return a wait of half to all of `delay` (capped at `maximum`), chosen at random.

    The jitter keeps many agents from reconnecting in step after a server restart.
    """
    ceiling = min(delay, maximum)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - timing jitter, not a secret


class Agent:
    """One agent: `await agent.run()` serves until `stop()` or a fatal rejection."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.state = StateStore(options.data_dir, options.key_manager, options.trust_domain)
        self.identity: AgentIdentity | None = None
        self.connection = ServerConnection(
            options.server_host, options.server_port, options.trust_domain, self._credentials
        )
        self.usage = UsageRecorder(self.connection, interval=options.usage_interval)
        self.manager = Manager(
            self.connection, options.trust_domain, usage=self.usage, max_svids=options.max_svids
        )
        self.attestor = CompositeAttestor(options.workload_attestors)
        self.endpoint = WorkloadEndpoint(
            self.manager, self.attestor, options.socket_path, rate_limit=options.rate_limit
        )
        self.exit_code = 0
        self.observability = AgentObservability(self._readiness)
        self.stop_reason: str | None = None
        self.synced = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnecting = False
        # Set when an entry update arrived, so the next interruption retries from 1 s.
        self._delay_reset = False

    # Credentials for the server connection.

    def _credentials(self) -> ClientCredentials:
        identity = self.identity
        if identity is not None and identity.expired():
            # The server's TLS handshake rejects an expired client certificate, so attesting
            # again goes without one. The server is still verified with the latest bundle.
            return ClientCredentials(identity.bundle.to_pem().encode())
        if identity is not None:
            return ClientCredentials(
                identity.bundle.to_pem().encode(), identity.chain, identity.key
            )
        bundle = self.options.bootstrap_bundle
        if bundle is None:
            # insecure_bootstrap: the server is not verified until the first bundle arrives.
            return ClientCredentials(None)
        return ClientCredentials(bundle.to_pem().encode())

    # Lifecycle.

    async def start(self) -> None:
        """Load or obtain the agent SVID, then serve the Workload API and start the loops."""
        try:
            # An unusable socket path fails before attestation, which may use up a join token.
            prepare_socket_path(self.options.socket_path)
        except OSError as error:
            raise AgentStartError(str(error)) from None
        self.identity = await self._initial_identity()
        log.info(
            "agent SVID ready",
            extra={
                "agent_id": str(self.identity.spiffe_id),
                "serial": f"{self.identity.chain[0].serial_number:x}",
            },
        )
        self.manager.apply(EntryUpdate(bundle=self.identity.bundle))
        self.manager.start()
        self.usage.start()
        try:
            await self.endpoint.start()
        except OSError as error:
            raise AgentStartError(str(error)) from None
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="warden-agent-sync"),
            asyncio.create_task(self._renew_loop(), name="warden-agent-renew"),
        ]
        try:
            await self.observability.start(
                self.options.health_listener,
                self.options.live_path,
                self.options.ready_path,
                self.options.prometheus_listener,
            )
        except OSError as error:
            raise AgentStartError(str(error)) from None

    async def run(self) -> int:
        """Start, serve until stopped, shut down; return the process exit code."""
        try:
            await self.start()
        except (AgentStartError, NodeAttestationError, AgentRejectedError) as error:
            log.error("the agent cannot start", extra={"error": str(error)})
            self.stop_reason = str(error)
            await self._shutdown()
            return 1
        await self._stopped.wait()
        await self._shutdown()
        return self.exit_code

    def stop(self, reason: str | None = None, exit_code: int = 0) -> None:
        """Ask the agent to stop; `run()` then returns `exit_code`."""
        if not self._stopped.is_set():
            self.stop_reason = reason
            self.exit_code = exit_code
            self._stopped.set()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.observability.stop()
        await self.endpoint.stop()
        await self.manager.stop()
        await self.usage.stop()
        await self.attestor.close()
        await self.connection.close()
        log.info("agent stopped", extra={"error": self.stop_reason} if self.stop_reason else {})

    def _readiness(self) -> tuple[bool, str]:
        """Ready while the agent holds an unexpired SVID and serves the Workload API."""
        identity = getattr(self, "identity", None)
        if identity is None:
            return False, "the agent has no SVID yet"
        if identity.chain[0].not_valid_after_utc <= datetime.now(UTC):
            return False, "the agent SVID has expired; the server is unreachable or rejects it"
        if self._stopped.is_set():
            return False, "the agent is stopping"
        return True, ""

    # Attestation.

    async def _initial_identity(self) -> AgentIdentity:
        stored = self.state.load()
        if stored is not None and not stored.expired():
            if stored.attestor and stored.attestor != self.options.node_attestor.name:
                log.warning(
                    "the stored agent SVID came from another node attestor; using it until it expires",
                    extra={"agent_id": str(stored.spiffe_id)},
                )
            return stored
        if stored is not None:
            log.warning(
                "the stored agent SVID has expired; attesting again",
                extra={
                    "agent_id": str(stored.spiffe_id),
                    "error": f"expired at {stored.not_after.isoformat()}",
                },
            )
            if not stored.reattestable and self.options.node_attestor.name == "join_token":
                log.warning("a join token works once: attestation needs a new one")
        if self.options.bootstrap_bundle is None and not self.options.insecure_bootstrap:
            raise AgentStartError(
                "no trust bundle to verify the server on first contact: set trust_bundle_path, "
                "or insecure_bootstrap = true for development only"
            )
        return await self._attest(previous=stored)

    async def _attest(self, previous: AgentIdentity | None) -> AgentIdentity:
        attestor = self.options.node_attestor
        key_id = other_key_id(previous.key_id) if previous else KEY_IDS[0]
        delay = RETRY_FIRST_SECONDS
        while True:
            key = await asyncio.to_thread(new_key, self.options.key_manager, key_id)
            try:
                result = await self.connection.attest(attestor, _csr(key))
                break
            except ServerUnavailableError as error:
                wait = _backoff(delay, self.options.retry_max)
                log.warning(
                    "cannot reach the server to attest; retrying",
                    extra={
                        "address": self.connection.address,
                        "error": str(error),
                        "delay_seconds": round(wait, 1),
                    },
                )
                if await self._sleep_or_stop(wait):
                    raise AgentStartError("stopped before attestation completed") from None
                delay = min(delay * 2, self.options.retry_max)
        check_chain_key(result.chain, key)
        identity = AgentIdentity(
            result.chain, key, key_id, result.bundle, result.reattestable, attestor.name
        )
        await asyncio.to_thread(self.state.save, identity)
        self.identity = identity
        await self.connection.reconnect()
        log.info(
            "node attested", extra={"agent_id": str(identity.spiffe_id), "attestor": attestor.name}
        )
        return identity

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep `seconds`; return True when the agent was asked to stop meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopped.wait()
        except TimeoutError:
            return False
        return True

    # The loops.

    def _apply(self, update: EntryUpdate) -> None:
        self.manager.apply(update)
        self.synced.set()
        if (
            update.bundle is not None
            and self.identity is not None
            and update.bundle != self.identity.bundle
        ):
            self.identity = replace(self.identity, bundle=update.bundle)
            try:
                self.state.save_bundle(update.bundle)
            except OSError as error:
                log.error("could not store the new trust bundle", extra={"error": str(error)})
        self._delay_reset = True

    async def _sync_loop(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            self._delay_reset = False
            try:
                await self.connection.sync(self._apply)
            except AgentRejectedError as error:
                if await self._rejected(error):
                    return
            except (ServerUnavailableError, SigningError) as error:
                if self._delay_reset:
                    delay = RETRY_FIRST_SECONDS
                if self._reconnecting:
                    # The channel was replaced for a renewed SVID: resume at once.
                    self._reconnecting = False
                    continue
                wait = _backoff(delay, self.options.retry_max)
                log.warning(
                    "entry sync interrupted; serving cached SVIDs and reconnecting",
                    extra={
                        "address": self.connection.address,
                        "error": str(error),
                        "delay_seconds": round(wait, 1),
                    },
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.options.retry_max)
            except Exception as error:
                # An update the agent could not apply. The loop must not end, because the
                # entries would never change again. A new stream starts with a full update.
                wait = _backoff(delay, self.options.retry_max)
                log.error(
                    "entry sync failed unexpectedly; reconnecting",
                    extra={
                        "address": self.connection.address,
                        "error": repr(error),
                        "delay_seconds": round(wait, 1),
                    },
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.options.retry_max)

    async def _renew_loop(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            identity = self.identity
            assert identity is not None
            wait = (identity.renew_at() - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._renew(identity)
                delay = RETRY_FIRST_SECONDS
            except AgentRejectedError as error:
                if await self._rejected(error):
                    return
            except Exception as error:
                # Besides an unreachable server, storing the renewed SVID can fail (a full
                # disk) or the server's response be invalid. Every failure is retried,
                # because a loop that ends leaves the agent SVID to expire.
                current = self.identity
                assert current is not None
                if current.expired():
                    if not await self._replace_expired(current):
                        return
                    continue
                pause = _backoff(delay, self.options.retry_max)
                log.warning(
                    "agent SVID renewal failed; retrying",
                    extra={"error": str(error) or repr(error), "delay_seconds": round(pause, 1)},
                )
                await asyncio.sleep(pause)
                delay = min(delay * 2, self.options.retry_max)

    async def _renew(self, identity: AgentIdentity) -> None:
        key_id = other_key_id(identity.key_id)
        key = await asyncio.to_thread(new_key, self.options.key_manager, key_id)
        chain = await self.connection.renew(_csr(key))
        check_chain_key(chain, key)
        renewed = replace(
            identity, chain=chain, key=key, key_id=key_id, obtained_at=datetime.now(UTC)
        )
        await asyncio.to_thread(self.state.save, renewed)
        self.identity = renewed
        self._reconnecting = True
        await self.connection.reconnect()
        log.info(
            "agent SVID renewed",
            extra={"agent_id": str(renewed.spiffe_id), "serial": f"{chain[0].serial_number:x}"},
        )

    async def _replace_expired(self, identity: AgentIdentity) -> bool:
        """Attest again after the SVID expired; return False when the agent must stop."""
        if not (identity.reattestable and self.options.node_attestor.reattestable):
            self.stop(
                f"the agent SVID expired at {identity.not_after.isoformat()} while the server was "
                "unreachable, and the node attestor cannot attest again; restart the agent with a "
                "new join token",
                exit_code=1,
            )
            log.error(
                "agent SVID expired",
                extra={"agent_id": str(identity.spiffe_id), "error": self.stop_reason},
            )
            return False
        try:
            await self._attest(previous=identity)
        except (AgentRejectedError, NodeAttestationError) as error:
            self.stop(f"attesting again failed: {error}", exit_code=1)
            return False
        except AgentStartError:
            return False
        return True

    async def _rejected(self, error: AgentRejectedError) -> bool:
        """Handle a rejection by the server; return True when the agent stops."""
        if error.reason == "stale_svid":
            # A renewal whose response was lost, or a connection opened with the previous
            # SVID: reconnect with the current one.
            log.warning(
                "the server no longer accepts this agent SVID; reconnecting",
                extra={"error": str(error)},
            )
            self._reconnecting = True
            await self.connection.reconnect()
            await asyncio.sleep(RETRY_FIRST_SECONDS)
            return False
        if error.reason == "evicted":
            await asyncio.to_thread(self.state.forget)
            message = (
                f"the server evicted this agent: {error}. Its SVID was removed from the data "
                "directory; restart the agent to attest again (a join token works once: "
                "generate a new one)"
            )
        else:
            # A ban's message from the server names the command that lifts it.
            message = f"the server rejected this agent: {error}"
        log.error("agent stopping", extra={"error": message})
        self.stop(message, exit_code=1)
        return True
