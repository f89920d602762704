"""The agent's connection to the server API (`warden.server.v1.AgentAPI`).

Calls go over mutual TLS through `warden.api.transport.ClientBridge`, which checks that the
server presents `spiffe://<trust domain>/spire/server` and presents the agent SVID (none
while attesting). This module also implements the manager's `Signer` and `UsageReporter`
and turns the entry stream into `EntryUpdate`s.

Errors are sorted by what the agent should do about them: `ServerUnavailableError` (retry
with backoff), `AgentRejectedError` (the server evicted or banned this agent: stop), and
`SigningError` for one refused request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from cryptography import x509

from warden.agent.entries import Entry
from warden.agent.manager import EntryUpdate
from warden.agent.nodeattest import NodeAttestationError, NodeAttestorClient
from warden.agent.svid import (
    Delivery,
    SignedJwtSvid,
    SigningError,
    X509SvidRequest,
    X509SvidResult,
)
from warden.api.server.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from warden.api.transport import ClientBridge, ClientCredentials
from warden.spiffe import Bundle, Selector, SpiffeError, SpiffeId, TrustDomain

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
_UNAVAILABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


class ServerUnavailableError(Exception):
    """The server could not be reached or did not respond in time. Retry later."""


class AgentRejectedError(Exception):
    """The server refuses this agent: `reason` is "evicted", "banned" or "attestation"."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AttestationResult:
    chain: tuple[x509.Certificate, ...]
    bundle: Bundle
    reattestable: bool


def entry_from_message(message: types_pb2.Entry) -> Entry:
    """Convert a server API entry into the agent's `Entry`."""
    return Entry(
        id=message.id,
        spiffe_id=SpiffeId.parse(message.spiffe_id),
        selectors=frozenset(Selector(item.type, item.value) for item in message.selectors),
        created_at=message.created_at,
        revision=message.revision,
        x509_svid_ttl=message.x509_svid_ttl,
        jwt_svid_ttl=message.jwt_svid_ttl,
        dns_names=tuple(message.dns_names),
        federates_with=frozenset(TrustDomain.parse(name) for name in message.federates_with),
        hint=message.hint,
    )


def bundle_from_message(message: types_pb2.Bundle) -> Bundle:
    return Bundle.from_jwks_json(TrustDomain(message.trust_domain), message.spiffe_json)


def _rejection(error: grpc.aio.AioRpcError) -> Exception:
    """Classify a failed call: unavailable, agent rejected, or a plain error."""
    code = error.code()
    details = error.details() or ""
    if code in _UNAVAILABLE:
        return ServerUnavailableError(f"the server is unavailable: {code.name}: {details}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        if "banned" in details:
            return AgentRejectedError(details, "banned")
        if "not attested" in details or "evicted" in details:
            return AgentRejectedError(details, "evicted")
        if "no longer current" in details:
            return AgentRejectedError(details, "stale_svid")
    return SigningError(f"{code.name}: {details}")


class ServerConnection:
    """A channel to the server's agent API that follows the agent's credentials."""

    def __init__(
        self,
        host: str,
        port: int,
        trust_domain: TrustDomain,
        credentials: Callable[[], ClientCredentials],
    ) -> None:
        self.address = f"{host}:{port}"
        self._bridge = ClientBridge(
            host, port, credentials, SpiffeId.from_segments(trust_domain, "spire", "server")
        )
        self.trust_domain = trust_domain
        self._channel: grpc.aio.Channel | None = None
        self._stub: agent_pb2_grpc.AgentAPIStub | None = None
        self._started = False

    async def _ensure(self) -> agent_pb2_grpc.AgentAPIStub:
        if not self._started:
            await self._bridge.start()
            self._started = True
        if self._stub is None:
            # A local subchannel pool: a new channel opens a new TLS connection, with the
            # current credentials, instead of reusing one another channel opened.
            self._channel = grpc.aio.insecure_channel(
                self._bridge.target,
                options=[
                    ("grpc.use_local_subchannel_pool", 1),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ],
            )
            self._stub = agent_pb2_grpc.AgentAPIStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]
        return self._stub

    async def reconnect(self) -> None:
        """Drop the channel, so the next call connects with the current credentials."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None

    async def close(self) -> None:
        await self.reconnect()
        if self._started:
            await self._bridge.close()
            self._started = False

    def _unavailable_hint(self, error: Exception) -> Exception:
        if isinstance(error, ServerUnavailableError) and self._bridge.last_error:
            return ServerUnavailableError(f"{error} ({self._bridge.last_error})")
        return error

    # Attestation and renewal.

    async def attest(self, attestor: NodeAttestorClient, csr: bytes) -> AttestationResult:
        """Attest the node with `attestor` and return the agent SVID chain and the bundle."""
        stub = await self._ensure()
        call = stub.AttestAgent(timeout=CALL_TIMEOUT_SECONDS)
        try:
            await call.write(
                agent_pb2.AttestAgentRequest(
                    params=agent_pb2.AttestAgentRequest.Params(
                        data=agent_pb2.AttestationData(
                            type=attestor.name, payload=await attestor.payload()
                        ),
                        csr=csr,
                    )
                )
            )
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise ServerUnavailableError("the server ended attestation without a result")
                if response.HasField("challenge"):
                    answer = await attestor.answer(bytes(response.challenge))
                    await call.write(agent_pb2.AttestAgentRequest(challenge_response=answer))
                    continue
                break
            await call.done_writing()
        except grpc.aio.AioRpcError as error:
            problem = _rejection(error)
            if isinstance(problem, SigningError):
                raise AgentRejectedError(
                    f"node attestation with {attestor.name} failed: {error.details()}",
                    "attestation",
                ) from None
            raise self._unavailable_hint(problem) from None
        except NodeAttestationError:
            call.cancel()
            raise
        result = response.result
        try:
            chain = tuple(x509.load_der_x509_certificate(der) for der in result.svid.cert_chain)
            bundle = bundle_from_message(result.bundle)
        except (ValueError, SpiffeError) as error:
            raise ServerUnavailableError(
                f"the server's attestation result is invalid: {error}"
            ) from None
        return AttestationResult(chain, bundle, result.reattestable)

    async def renew(self, csr: bytes) -> tuple[x509.Certificate, ...]:
        """Get a new agent SVID for the key of `csr`."""
        stub = await self._ensure()
        try:
            response = await stub.RenewAgent(
                agent_pb2.RenewAgentRequest(csr=csr), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            raise self._unavailable_hint(_rejection(error)) from None
        return tuple(x509.load_der_x509_certificate(der) for der in response.svid.cert_chain)

    # Signer.

    async def sign_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        stub = await self._ensure()
        message = agent_pb2.BatchNewX509SVIDRequest(
            params=[agent_pb2.NewX509SVIDParams(entry_id=r.entry_id, csr=r.csr) for r in requests]
        )
        try:
            response = await stub.BatchNewX509SVID(message, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable_hint(_rejection(error)) from None
        results = []
        for item in response.results:
            if item.status.code != 0:
                results.append(X509SvidResult(item.entry_id, error=item.status.message))
            else:
                results.append(X509SvidResult(item.entry_id, tuple(item.svid.cert_chain)))
        return results

    async def sign_jwt_svid(self, entry_id: str, audience: Sequence[str]) -> SignedJwtSvid:
        stub = await self._ensure()
        try:
            response = await stub.NewJWTSVID(
                agent_pb2.NewJWTSVIDRequest(entry_id=entry_id, audience=list(audience)),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            raise self._unavailable_hint(_rejection(error)) from None
        return SignedJwtSvid(
            SpiffeId.parse(response.spiffe_id),
            response.token,
            float(response.issued_at),
            float(response.expires_at),
        )

    # UsageReporter.

    async def report_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        stub = await self._ensure()
        message = agent_pb2.ReportDeliveriesRequest(
            deliveries=[
                agent_pb2.Delivery(entry_id=item.entry_id, delivered_at=item.delivered_at)
                for item in deliveries
            ]
        )
        try:
            await stub.ReportDeliveries(message, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable_hint(_rejection(error)) from None

    # Entry sync.

    async def sync(self, apply: Callable[[EntryUpdate], object]) -> None:
        """Follow the entry stream, calling `apply` per complete update, until it fails.

        A large update arrives in several messages, with `more` set on all but the last. They
        are joined into one `EntryUpdate`, so a full sync replaces the agent's entries at once.
        """
        stub = await self._ensure()
        call = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
        upserts: list[Entry] = []
        deleted: list[str] = []
        full = False
        bundle: Bundle | None = None
        try:
            async for message in call:
                full = full or message.full
                upserts.extend(entry_from_message(item) for item in message.upserts)
                deleted.extend(message.deleted_entry_ids)
                if message.HasField("bundle"):
                    bundle = bundle_from_message(message.bundle)
                if message.more:
                    continue
                apply(
                    EntryUpdate(
                        upserts=tuple(upserts),
                        deleted_ids=tuple(deleted),
                        full=full,
                        bundle=bundle,
                        federated_bundles=tuple(
                            bundle_from_message(b) for b in message.federated_bundles
                        )
                        if message.federated_bundles
                        else None,
                    )
                )
                upserts, deleted, full, bundle = [], [], False, None
        except grpc.aio.AioRpcError as error:
            raise self._unavailable_hint(_rejection(error)) from None
        finally:
            call.cancel()
        raise ServerUnavailableError("the server ended the entry stream")
