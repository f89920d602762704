"""The service agents call: node attestation, renewal, signing, entry sync, usage reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc

from warden.api.server.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from warden.server.auth import abort, certificate_expired, certificate_serial, peer_of
from warden.server.convert import MAX_UNIX_SECONDS, cached_entry_message
from warden.server.nodeattest import AttestationError
from warden.server.signing import SigningDisabledError, SigningError, public_key_from_csr
from warden.store.errors import AgentBanned, AlreadyExists, NotFound, StoreError

if TYPE_CHECKING:
    from warden.server.app import WardenServer
    from warden.server.transport import Peer

log = logging.getLogger(__name__)

# How long attestation waits for each message of the agent, in seconds.
ATTESTATION_READ_SECONDS = 30.0
# How often an open sync stream checks again that its agent may still use it, in seconds.
NODE_RECHECK_SECONDS = 2.0
# Entries per sync message, so that a large set stays under gRPC's 4 MiB message limit.
SYNC_CHUNK = 500
MAX_BATCH = 1000


@dataclass(frozen=True)
class AgentCaller:
    spiffe_id: str
    node_selectors: frozenset[str]
    peer: Peer


class AgentAPI(agent_pb2_grpc.AgentAPIServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def _authenticate(self, context: Any) -> AgentCaller:
        """Return the calling agent, or abort unless it presents a current SVID of an attested node."""
        peer = await peer_of(self._server, context)
        if peer.kind != "tls" or peer.spiffe_id is None:
            await abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "this call needs an agent X509-SVID presented over mutual TLS; attest first",
            )
        spiffe_id = str(peer.spiffe_id)
        if certificate_expired(self._server, peer):
            await abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                f"the agent SVID of {spiffe_id} has expired; the agent must renew it before it "
                "expires, or attest again",
            )
        node = await self._server.nodes.get(spiffe_id)
        if node is None:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {spiffe_id} is not attested (it was evicted or never attested); "
                "the agent must attest again",
            )
        if node.banned:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {spiffe_id} is banned; an operator must evict it with 'warden agent evict "
                f"-spiffeID {spiffe_id}' before it can attest again",
            )
        serial = certificate_serial(peer)
        if serial not in (node.serial_number, node.new_serial_number) or not serial:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {spiffe_id} presented SVID serial {serial}, which is no longer current",
            )
        if serial == node.new_serial_number:
            await self._server.nodes.activate_new_serial(node)
        self._server.nodes.seen(spiffe_id)
        return AgentCaller(
            spiffe_id, frozenset(f"{s.type}:{s.value}" for s in node.selectors), peer
        )

    # -- attestation ------------------------------------------------------------------------

    async def AttestAgent(self, request_iterator: Any, context: Any) -> None:
        server = self._server
        peer = await peer_of(server, context)
        if peer.kind != "tls":
            await abort(
                context, grpc.StatusCode.UNAUTHENTICATED, "agents attest over the TLS listener"
            )
        if not server.allow_attestation(peer.host):
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many attestations from {peer.host}; retry in a second",
            )
        try:
            first = await asyncio.wait_for(context.read(), ATTESTATION_READ_SECONDS)
        except TimeoutError:
            await abort(
                context, grpc.StatusCode.DEADLINE_EXCEEDED, "no attestation data received in time"
            )
        if first is grpc.aio.EOF or not first.HasField("params"):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message must carry the attestation params",
            )
        params = first.params
        attestor = server.attestors.get(params.data.type)
        if attestor is None:
            configured = ", ".join(sorted(server.attestors)) or "none"
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"node attestor {params.data.type!r} is not configured on this server (configured: {configured})",
            )
        try:
            public_key = public_key_from_csr(params.csr)
        except SigningError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"agent SVID request: {error}")

        async def challenge(data: bytes) -> bytes:
            await context.write(agent_pb2.AttestAgentResponse(challenge=data))
            try:
                response = await asyncio.wait_for(context.read(), ATTESTATION_READ_SECONDS)
            except TimeoutError:
                raise AttestationError(
                    f"the agent did not respond to the challenge within {ATTESTATION_READ_SECONDS:g} s",
                    permission_denied=False,
                ) from None
            if response is grpc.aio.EOF or not response.HasField("challenge_response"):
                raise AttestationError(
                    "the agent did not respond to the challenge", permission_denied=False
                )
            return bytes(response.challenge_response)

        try:
            result = await attestor.attest(bytes(params.data.payload), challenge)
        except AttestationError as error:
            server.metrics.count("node_attestor", "failed")
            log.warning(
                "node attestation failed",
                extra={"address": peer.address, "attestor": params.data.type, "error": str(error)},
            )
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if error.permission_denied
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await abort(context, code, f"node attestation failed: {error}")

        try:
            svid, bundle = await server.attest_node(result, params.data.type, public_key, peer)
        except AgentBanned as error:
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, str(error))
        except AlreadyExists as error:
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, str(error))
        except StoreError as error:
            await abort(
                context, grpc.StatusCode.INTERNAL, f"cannot record the attestation: {error}"
            )
        await context.write(
            agent_pb2.AttestAgentResponse(
                result=agent_pb2.AttestAgentResponse.Result(
                    svid=svid, bundle=bundle, reattestable=result.reattestable
                )
            )
        )

    async def RenewAgent(self, request: Any, context: Any) -> Any:
        caller = await self._authenticate(context)
        if not self._server.allow_signing(caller.peer.host, 1):
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"signing rate limit exceeded for {caller.peer.host}",
            )
        try:
            public_key = public_key_from_csr(request.csr)
        except SigningError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            svid = await self._server.renew_agent(caller.spiffe_id, public_key)
        except NotFound as error:
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, str(error))
        return agent_pb2.RenewAgentResponse(svid=svid)

    # -- signing ----------------------------------------------------------------------------

    async def BatchNewX509SVID(self, request: Any, context: Any) -> Any:
        caller = await self._authenticate(context)
        if len(request.params) > MAX_BATCH:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {MAX_BATCH} CSRs per call, got {len(request.params)}",
            )
        if not self._server.allow_signing(caller.peer.host, len(request.params)):
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"signing rate limit exceeded for {caller.peer.host}",
            )
        authorized = self._server.hub.authorized(caller.spiffe_id, caller.node_selectors)
        results: list[Any] = [None] * len(request.params)
        to_sign = []
        for index, item in enumerate(request.params):
            entry = authorized.get(item.entry_id)
            if entry is None:
                results[index] = agent_pb2.BatchNewX509SVIDResponse.Result(
                    entry_id=item.entry_id,
                    status=types_pb2.Status(
                        code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                        message=f"entry {item.entry_id} is not authorised for agent {caller.spiffe_id}",
                    ),
                )
                log.warning(
                    "rejected a CSR for an unauthorised entry",
                    extra={"agent_id": caller.spiffe_id, "entry_id": item.entry_id},
                )
                continue
            to_sign.append((index, entry, bytes(item.csr)))
        signed = await self._server.signing.sign_entries(
            caller.spiffe_id, [(e, c) for _, e, c in to_sign]
        )
        for (index, entry, _), outcome in zip(to_sign, signed, strict=True):
            if isinstance(outcome, SigningError):
                results[index] = agent_pb2.BatchNewX509SVIDResponse.Result(
                    entry_id=entry.id,
                    status=types_pb2.Status(
                        code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=str(outcome)
                    ),
                )
            else:
                results[index] = agent_pb2.BatchNewX509SVIDResponse.Result(
                    entry_id=entry.id, status=types_pb2.Status(code=0, message="OK"), svid=outcome
                )
        return agent_pb2.BatchNewX509SVIDResponse(results=results)

    async def NewJWTSVID(self, request: Any, context: Any) -> Any:
        caller = await self._authenticate(context)
        if not request.audience or not all(request.audience):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "at least one non-empty audience is required",
            )
        if not self._server.allow_signing(caller.peer.host, 1):
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"signing rate limit exceeded for {caller.peer.host}",
            )
        entry = self._server.hub.authorized(caller.spiffe_id, caller.node_selectors).get(
            request.entry_id
        )
        if entry is None:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"entry {request.entry_id} is not authorised for agent {caller.spiffe_id}",
            )
        try:
            token, issued_at, expires_at = await self._server.signing.sign_jwt_for_entry(
                caller.spiffe_id, entry, request.audience
            )
        except SigningDisabledError as error:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except SigningError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return agent_pb2.NewJWTSVIDResponse(
            token=token, spiffe_id=entry.spiffe_id, issued_at=issued_at, expires_at=expires_at
        )

    # -- sync -------------------------------------------------------------------------------

    async def _recheck(self, caller: AgentCaller) -> tuple[grpc.StatusCode, str] | None:
        """Why the caller may no longer use its stream, or None while it still may."""
        if certificate_expired(self._server, caller.peer):
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                f"the agent SVID of {caller.spiffe_id} has expired; renew it and reconnect",
            )
        node = await self._server.nodes.get(caller.spiffe_id)
        if node is None:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {caller.spiffe_id} is not attested (it was evicted); the agent must "
                "attest again",
            )
        if node.banned:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {caller.spiffe_id} is banned; an operator must evict it with 'warden "
                f"agent evict -spiffeID {caller.spiffe_id}' before it can attest again",
            )
        serial = certificate_serial(caller.peer)
        if serial not in (node.serial_number, node.new_serial_number):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {caller.spiffe_id} presented SVID serial {serial}, which is no longer "
                "current",
            )
        return None

    async def SyncEntries(self, request: Any, context: Any) -> None:
        caller = await self._authenticate(context)
        hub = self._server.hub
        session = hub.register(caller.spiffe_id, caller.node_selectors)
        log.info("agent sync started", extra={"agent_id": caller.spiffe_id})
        first = True
        try:
            while True:
                if session.closed_reason:
                    await abort(context, grpc.StatusCode.PERMISSION_DENIED, session.closed_reason)
                session.changed.clear()
                authorized = hub.authorized(session.agent_id, session.node_selectors)
                session.authorized_ids = {e.spiffe_id for e in authorized.values()}
                upserts = [e for e in authorized.values() if session.sent.get(e.id) != e.revision]
                deleted = [entry_id for entry_id in session.sent if entry_id not in authorized]
                bundle = self._server.bundle_message()
                bundle_changed = bundle.sequence != session.bundle_sequence
                if first or upserts or deleted or bundle_changed:
                    await self._send(
                        context,
                        first,
                        upserts,
                        deleted,
                        bundle if (first or bundle_changed) else None,
                    )
                    session.bundle_sequence = bundle.sequence
                    for entry in upserts:
                        session.sent[entry.id] = entry.revision
                    for entry_id in deleted:
                        del session.sent[entry_id]
                    first = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.changed.wait(), NODE_RECHECK_SECONDS)
                # A long-lived stream must notice an expired SVID, and an eviction or ban made
                # through another server, which no local event announces.
                problem = await self._recheck(caller)
                if problem is not None:
                    await abort(context, *problem)
        finally:
            hub.unregister(session)
            log.info("agent sync ended", extra={"agent_id": caller.spiffe_id})

    async def _send(
        self, context: Any, full: bool, upserts: list[Any], deleted: list[str], bundle: Any
    ) -> None:
        chunks = [upserts[i : i + SYNC_CHUNK] for i in range(0, len(upserts), SYNC_CHUNK)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            message = agent_pb2.SyncEntriesResponse(
                full=full,
                upserts=[cached_entry_message(e) for e in chunk],
                deleted_entry_ids=deleted if last else [],
                more=not last,
            )
            if index == 0 and bundle is not None:
                message.bundle.CopyFrom(bundle)
            await context.write(message)

    async def ReportDeliveries(self, request: Any, context: Any) -> Any:
        caller = await self._authenticate(context)
        authorized = self._server.hub.authorized(caller.spiffe_id, caller.node_selectors)
        now = self._server.clock()
        deliveries = []
        for delivery in request.deliveries:
            if delivery.entry_id not in authorized:
                continue
            if not 0 < delivery.delivered_at <= MAX_UNIX_SECONDS:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"delivery time {delivery.delivered_at} of entry {delivery.entry_id} is out "
                    "of range; send Unix seconds",
                )
            # An agent's clock may run ahead of the server's: never record a future time.
            moment = datetime.fromtimestamp(
                min(delivery.delivered_at, int(now.timestamp())), tz=UTC
            )
            deliveries.append((delivery.entry_id, moment))
        if deliveries:
            await asyncio.to_thread(self._server.datastore.record_deliveries, deliveries)
        return agent_pb2.ReportDeliveriesResponse()


def add_agent_service(grpc_server: grpc.aio.Server, server: WardenServer) -> None:
    agent_pb2_grpc.add_AgentAPIServicer_to_server(AgentAPI(server), grpc_server)
