"""The SPIFFE Workload API handler.

Every call runs the same steps: check the request, identify and attest the caller, apply the
rate limit, match entries, build the response. Each error maps to the status its cause
deserves:

- `InvalidArgument` for a bad request, including a missing `workload.spiffe.io` header;
- `Unavailable` when the caller cannot be attested or no SVID is ready;
- `PermissionDenied` when no entry matches ("no identity issued");
- `ResourceExhausted` over the rate limit.

Method names (`FetchX509SVID`, ...) are fixed by the standard.

A caller must be entitled to at least one identity for every call, bundle calls and
`ValidateJWTSVID` included, as in SPIRE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
from google.protobuf import struct_pb2

from warden.agent.attestor import AttestationError, CompositeAttestor
from warden.agent.caller import Caller, CallerChangedError
from warden.agent.entries import Entry
from warden.agent.listener import CallerRegistry
from warden.agent.manager import Manager, X509Snapshot
from warden.agent.ratelimit import RateLimiter
from warden.agent.svid import SigningError
from warden.api import workload_pb2, workload_pb2_grpc
from warden.spiffe import InvalidSpiffeIdError, Selector, SpiffeId
from warden.spiffe.bundle import BundleSet
from warden.spiffe.errors import JwtSvidError
from warden.spiffe.jwtsvid import validate_jwt_svid

log = logging.getLogger(__name__)

HEADER_KEY = "workload.spiffe.io"
HEADER_VALUE = "true"
#: How long a call waits for the SVIDs of a workload's entries to be signed.
DEFAULT_SVID_WAIT_SECONDS = 10.0


def loggable_selectors(selectors: frozenset[Selector]) -> list[str]:
    """Selectors for logs, with `docker:env` values masked (environments carry secrets)."""
    masked = []
    for selector in sorted(selectors):
        if selector.type == "docker" and selector.value.startswith("env:"):
            name = selector.value[4:].split("=", 1)[0]
            masked.append(f"docker:env:{name}=<redacted>")
        else:
            masked.append(str(selector))
    return masked


@dataclass(frozen=True, slots=True)
class Workload:
    """An admitted caller: its process and its attested selectors."""

    caller: Caller
    selectors: frozenset[Selector]


class WorkloadApiHandler(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    """Serves the Workload API from the manager's cache."""

    def __init__(
        self,
        manager: Manager,
        attestor: CompositeAttestor,
        callers: CallerRegistry,
        rate_limiter: RateLimiter,
        svid_wait: float = DEFAULT_SVID_WAIT_SECONDS,
    ) -> None:
        self.manager = manager
        self.attestor = attestor
        self.callers = callers
        self.rate_limiter = rate_limiter
        self.svid_wait = svid_wait

    # The steps every call shares.

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any], method: str) -> Workload:
        """Check the header, attest the caller and apply the rate limit."""
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get(HEADER_KEY) != HEADER_VALUE:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"security header missing from request: every Workload API call must carry "
                f"the metadata {HEADER_KEY}: {HEADER_VALUE}",
            )

        caller = self.callers.lookup(context.peer())
        if caller is None:
            log.error(
                "Workload API call from an unknown connection", extra={"address": context.peer()}
            )
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "could not identify the caller")

        try:
            selectors = await self.attestor.attest(caller)
            caller.verify_unchanged()
        except AttestationError as error:
            log.warning(
                "workload attestation failed",
                extra={"caller": caller.pid, "error": str(error), "path": method},
            )
            await _abort(
                context, grpc.StatusCode.UNAVAILABLE, f"workload attestation failed: {error}"
            )
        except CallerChangedError as error:
            log.warning(
                "caller changed during attestation",
                extra={"caller": caller.pid, "error": str(error), "path": method},
            )
            await _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"could not verify the caller: {error}; reconnect to the Workload API",
            )

        if not self.rate_limiter.allow(selectors):
            log.warning(
                "Workload API rate limit exceeded",
                extra={
                    "caller": caller.pid,
                    "selectors": loggable_selectors(selectors),
                    "path": method,
                },
            )
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "rate limit exceeded for this workload; retry later",
            )
        return Workload(caller, selectors)

    async def _recheck(
        self, context: grpc.aio.ServicerContext[Any, Any], workload: Workload, method: str
    ) -> None:
        """End a stream whose caller is no longer the process that was attested.

        A stream outlives its attestation: a daemon may start as root, open its stream and
        then drop to another uid, or execute another program. Each later message is checked
        against the process as it was attested, so such a caller reconnects and is attested
        as what it is now.
        """
        try:
            workload.caller.verify_unchanged()
        except CallerChangedError as error:
            log.warning(
                "caller changed during a stream",
                extra={"caller": workload.caller.pid, "error": str(error), "path": method},
            )
            await _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"could not verify the caller: {error}; reconnect to the Workload API",
            )

    def _entries(self, workload: Workload) -> list[Entry]:
        return self.manager.match(workload.selectors)

    async def _deny(
        self, context: grpc.aio.ServicerContext[Any, Any], workload: Workload, method: str
    ) -> NoReturn:
        log.info(
            "no identity issued",
            extra={
                "caller": workload.caller.pid,
                "selectors": loggable_selectors(workload.selectors),
                "path": method,
            },
        )
        await _abort(context, grpc.StatusCode.PERMISSION_DENIED, "no identity issued")

    # X.509.

    async def FetchX509SVID(
        self,
        request: workload_pb2.X509SVIDRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[workload_pb2.X509SVIDResponse]:
        workload = await self._admit(context, "FetchX509SVID")

        subscription = self.manager.subscribe(workload.selectors)
        try:
            sent: tuple[object, ...] | None = None
            while True:
                # The first message waits for every entry's SVID, so that the workload starts
                # with its full set. Later changes go out at once, because a withdrawal must
                # not wait for an SVID the server may refuse. They wait only while no SVID
                # at all is ready.
                snapshot = self.manager.snapshot(subscription.entries)
                if sent is None or not snapshot.svids:
                    snapshot = await self.manager.wait_for_svids(subscription, self.svid_wait)
                if not snapshot.entries:
                    await self._deny(context, workload, "FetchX509SVID")
                if not snapshot.svids or snapshot.bundle is None:
                    await self._unavailable(context, snapshot)
                if snapshot.fingerprint != sent:
                    await self._recheck(context, workload, "FetchX509SVID")
                    yield x509_svid_response(snapshot)
                    sent = snapshot.fingerprint
                    self.manager.record_delivery(entry.id for entry, _ in snapshot.svids)
                    log.debug(
                        "sent X509-SVIDs",
                        extra={
                            "caller": workload.caller.pid,
                            "spiffe_id": [str(svid.spiffe_id) for _, svid in snapshot.svids],
                        },
                    )
                await subscription.changed()
        finally:
            self.manager.unsubscribe(subscription)

    async def _unavailable(
        self, context: grpc.aio.ServicerContext[Any, Any], snapshot: X509Snapshot
    ) -> NoReturn:
        if snapshot.bundle is None:
            reason = "the agent has no trust bundle yet; it may not have reached the server"
        else:
            reason = "no valid X509-SVID is available yet for this workload's entries"
        if self.manager.signing_error:
            reason += f" (last signing error: {self.manager.signing_error})"
        await _abort(context, grpc.StatusCode.UNAVAILABLE, reason)

    async def FetchX509Bundles(
        self,
        request: workload_pb2.X509BundlesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[workload_pb2.X509BundlesResponse]:
        workload = await self._admit(context, "FetchX509Bundles")

        subscription = self.manager.subscribe(workload.selectors)
        try:
            sent: tuple[object, ...] | None = None
            while True:
                if not subscription.entries:
                    await self._deny(context, workload, "FetchX509Bundles")
                bundles = self.manager.bundles_for(subscription.entries)
                if not bundles:
                    await self._unavailable(context, self.manager.snapshot(()))
                fingerprint = tuple(bundles)
                if fingerprint != sent:
                    await self._recheck(context, workload, "FetchX509Bundles")
                    yield workload_pb2.X509BundlesResponse(
                        bundles={bundle.trust_domain_id: bundle.x509_der for bundle in bundles}
                    )
                    sent = fingerprint
                await subscription.changed()
        finally:
            self.manager.unsubscribe(subscription)

    # JWT.

    async def FetchJWTSVID(
        self,
        request: workload_pb2.JWTSVIDRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> workload_pb2.JWTSVIDResponse:
        audience = [value for value in request.audience if value]
        if not audience:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "audience must be specified: request at least one audience",
            )
        requested: SpiffeId | None = None
        if request.spiffe_id:
            try:
                requested = SpiffeId.parse(request.spiffe_id)
            except InvalidSpiffeIdError as error:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        workload = await self._admit(context, "FetchJWTSVID")

        entries = self._entries(workload)
        if requested is not None:
            entries = [entry for entry in entries if entry.spiffe_id == requested]
        if not entries:
            await self._deny(context, workload, "FetchJWTSVID")

        try:
            svids = await asyncio.gather(
                *(self.manager.fetch_jwt_svid(entry, audience) for entry in entries)
            )
        except SigningError as error:
            log.warning(
                "no JWT-SVID could be signed",
                extra={"caller": workload.caller.pid, "audience": audience, "error": str(error)},
            )
            await _abort(
                context, grpc.StatusCode.UNAVAILABLE, f"could not sign a JWT-SVID: {error}"
            )
        self.manager.record_delivery(entry.id for entry in entries)
        return workload_pb2.JWTSVIDResponse(
            svids=[
                workload_pb2.JWTSVID(
                    spiffe_id=str(svid.spiffe_id), svid=svid.token, hint=entry.hint
                )
                for entry, svid in zip(entries, svids, strict=True)
            ]
        )

    async def FetchJWTBundles(
        self,
        request: workload_pb2.JWTBundlesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[workload_pb2.JWTBundlesResponse]:
        workload = await self._admit(context, "FetchJWTBundles")

        subscription = self.manager.subscribe(workload.selectors)
        try:
            sent: tuple[object, ...] | None = None
            while True:
                if not subscription.entries:
                    await self._deny(context, workload, "FetchJWTBundles")
                bundles = self.manager.bundles_for(subscription.entries)
                if not bundles:
                    await self._unavailable(context, self.manager.snapshot(()))
                fingerprint = tuple(bundles)
                if fingerprint != sent:
                    await self._recheck(context, workload, "FetchJWTBundles")
                    yield workload_pb2.JWTBundlesResponse(
                        bundles={bundle.trust_domain_id: bundle.jwks_json for bundle in bundles}
                    )
                    sent = fingerprint
                await subscription.changed()
        finally:
            self.manager.unsubscribe(subscription)

    async def ValidateJWTSVID(
        self,
        request: workload_pb2.ValidateJWTSVIDRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> workload_pb2.ValidateJWTSVIDResponse:
        if not request.audience:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")
        if not request.svid:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "svid must be specified")
        workload = await self._admit(context, "ValidateJWTSVID")

        entries = self._entries(workload)
        if not entries:
            await self._deny(context, workload, "ValidateJWTSVID")

        bundles = BundleSet(bundle.bundle for bundle in self.manager.bundles_for(entries))
        now = datetime.fromtimestamp(self.manager.clock(), tz=UTC)
        try:
            svid = validate_jwt_svid(request.svid, request.audience, bundles, now)
        except JwtSvidError as error:
            log.info(
                "JWT-SVID rejected",
                extra={
                    "caller": workload.caller.pid,
                    "audience": request.audience,
                    "error": str(error),
                },
            )
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        claims = struct_pb2.Struct()
        claims.update(dict(svid.claims))
        return workload_pb2.ValidateJWTSVIDResponse(spiffe_id=str(svid.spiffe_id), claims=claims)


def x509_svid_response(snapshot: X509Snapshot) -> workload_pb2.X509SVIDResponse:
    """Build the `FetchX509SVID` message for a snapshot: SVIDs oldest entry first."""
    assert snapshot.bundle is not None
    bundle_der = snapshot.bundle.x509_der
    return workload_pb2.X509SVIDResponse(
        svids=[
            workload_pb2.X509SVID(
                spiffe_id=str(svid.spiffe_id),
                x509_svid=b"".join(svid.chain),
                x509_svid_key=svid.private_key,
                bundle=bundle_der,
                hint=entry.hint,
            )
            for entry, svid in snapshot.svids
        ],
        federated_bundles={
            bundle.trust_domain_id: bundle.x509_der for bundle in snapshot.federated
        },
    )


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str
) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
