"""A SPIFFE Workload API client on Warden's generated proto.

Every call carries the `workload.spiffe.io: true` metadata. One-shot fetches read the first
message of a stream and cancel it. `watch_x509_context` and `watch_jwt_bundles` follow a
stream in a background thread and reconnect with backoff, as go-spiffe's client does: every
error except `InvalidArgument` (a bad request that retrying cannot fix) is retried.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from google.protobuf import json_format

from warden.api import workload_pb2, workload_pb2_grpc
from warden.mtls.address import grpc_target, resolve_address
from warden.mtls.der import load_der_certificates
from warden.spiffe import Bundle, BundleSet, SpiffeId, TrustDomain

log = logging.getLogger(__name__)

HEADER = (("workload.spiffe.io", "true"),)
DEFAULT_TIMEOUT_SECONDS = 10.0
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
_NOT_RETRIED = frozenset({grpc.StatusCode.INVALID_ARGUMENT})

Update = TypeVar("Update")


class WorkloadApiError(Exception):
    """A Workload API call failed; `code` is the gRPC status, when there was one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class X509Svid:
    """An X509-SVID with its private key, as received from the Workload API."""

    spiffe_id: SpiffeId
    #: Leaf first, then intermediates.
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes = field(repr=False)
    hint: str = ""

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def key_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class X509Context:
    """The X509-SVIDs of a workload (default first) and the X.509 bundles it trusts."""

    svids: tuple[X509Svid, ...]
    bundles: BundleSet

    @property
    def default_svid(self) -> X509Svid:
        return self.svids[0]


@dataclass(frozen=True)
class JwtSvidToken:
    """A JWT-SVID as fetched from the Workload API (the agent vouches for it)."""

    spiffe_id: SpiffeId
    token: str = field(repr=False)
    hint: str = ""


@dataclass(frozen=True)
class ValidatedJwt:
    """The result of `ValidateJWTSVID`: the token's SPIFFE ID and its claims."""

    spiffe_id: SpiffeId
    claims: dict[str, Any]


def parse_x509_response(response: workload_pb2.X509SVIDResponse) -> X509Context:
    """Decode an `X509SVIDResponse`; raise WorkloadApiError when it is malformed."""
    svids = []
    bundles: dict[TrustDomain, Bundle] = {}
    try:
        for item in response.svids:
            spiffe_id = SpiffeId.parse(item.spiffe_id)
            chain = tuple(load_der_certificates(item.x509_svid))
            key = serialization.load_der_private_key(item.x509_svid_key, password=None)
            if not chain or chain[0].public_key() != key.public_key():
                raise ValueError(f"the key of {spiffe_id} does not match its certificate")
            svids.append(X509Svid(spiffe_id, chain, key, item.hint))
            domain = spiffe_id.trust_domain
            bundles[domain] = Bundle(domain, tuple(load_der_certificates(item.bundle)))
        for name, der in response.federated_bundles.items():
            domain = TrustDomain.parse(name)
            bundles.setdefault(domain, Bundle(domain, tuple(load_der_certificates(der))))
    except ValueError as error:
        raise WorkloadApiError(f"invalid X509SVIDResponse from the Workload API: {error}") from None
    if not svids:
        raise WorkloadApiError("the Workload API returned no X509-SVID")
    return X509Context(tuple(svids), BundleSet(bundles.values()))


def parse_x509_bundles(bundles: Any) -> BundleSet:
    """Decode a map of trust domain ID to concatenated DER certificates."""
    try:
        return BundleSet(
            Bundle(TrustDomain.parse(name), tuple(load_der_certificates(der)))
            for name, der in bundles.items()
        )
    except ValueError as error:
        raise WorkloadApiError(f"invalid X.509 bundle from the Workload API: {error}") from None


def parse_jwt_bundles(bundles: Any) -> BundleSet:
    """Decode a map of trust domain ID to JWK Set document."""
    try:
        return BundleSet(
            Bundle.from_jwks_json(TrustDomain.parse(name), document)
            for name, document in bundles.items()
        )
    except ValueError as error:
        raise WorkloadApiError(f"invalid JWT bundle from the Workload API: {error}") from None


class Watch:
    """A background thread that follows a Workload API stream until cancelled."""

    def __init__(self, target: Callable[[Watch], None], name: str) -> None:
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None
        self._thread = threading.Thread(target=target, args=(self,), name=name, daemon=True)
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def set_call(self, call: grpc.Call | None) -> None:
        with self._lock:
            self._call = call
            if call is not None and self._cancelled.is_set():
                call.cancel()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True when cancelled meanwhile."""
        return self._cancelled.wait(seconds)

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class WorkloadApiClient:
    """A client of the SPIFFE Workload API at `address` (see `warden.mtls.address`)."""

    def __init__(
        self, address: str | None = None, *, timeout: float | None = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.address = resolve_address(address)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(grpc_target(self.address))
        self._stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> WorkloadApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, method: str, error: grpc.RpcError) -> WorkloadApiError:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        name = code.name if code is not None else "error"
        hint = ""
        if code == grpc.StatusCode.UNAVAILABLE and "connect" in (details or "").lower():
            hint = "; is the agent running, and is the socket path right?"
        return WorkloadApiError(f"{method} at {self.address} failed: {name}: {details}{hint}", code)

    def _first(self, method: str, call: Any) -> Any:
        try:
            return next(call)
        except StopIteration:
            raise WorkloadApiError(
                f"{method} at {self.address}: the stream ended with no message"
            ) from None
        except grpc.RpcError as error:
            raise self._error(method, error) from None
        finally:
            call.cancel()

    # X.509.

    def fetch_x509_context(self, timeout: float | None = None) -> X509Context:
        """Return the workload's X509-SVIDs and the X.509 bundles it trusts."""
        call = self._stub.FetchX509SVID(
            workload_pb2.X509SVIDRequest(), metadata=HEADER, timeout=timeout or self.timeout
        )
        return parse_x509_response(self._first("FetchX509SVID", call))

    def fetch_x509_svid(self, timeout: float | None = None) -> X509Svid:
        """Return the workload's default X509-SVID."""
        return self.fetch_x509_context(timeout).default_svid

    def fetch_x509_bundles(self, timeout: float | None = None) -> BundleSet:
        call = self._stub.FetchX509Bundles(
            workload_pb2.X509BundlesRequest(), metadata=HEADER, timeout=timeout or self.timeout
        )
        return parse_x509_bundles(self._first("FetchX509Bundles", call).bundles)

    # JWT.

    def fetch_jwt_svids(
        self, audience: str | Sequence[str], spiffe_id: SpiffeId | str | None = None
    ) -> list[JwtSvidToken]:
        """Return a JWT-SVID for `audience` (one string or several) per identity, or for
        `spiffe_id` only."""
        # A bare string is one audience, not a sequence of one-letter audiences.
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(audiences):
            raise ValueError("a JWT-SVID needs at least one non-empty audience")
        request = workload_pb2.JWTSVIDRequest(
            audience=audiences, spiffe_id=str(spiffe_id) if spiffe_id else ""
        )
        try:
            response = self._stub.FetchJWTSVID(request, metadata=HEADER, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._error("FetchJWTSVID", error) from None
        return [
            JwtSvidToken(SpiffeId.parse(item.spiffe_id), item.svid, item.hint)
            for item in response.svids
        ]

    def fetch_jwt_svid(
        self, audience: str | Sequence[str], spiffe_id: SpiffeId | str | None = None
    ) -> JwtSvidToken:
        """Return the default identity's JWT-SVID for `audience` (or `spiffe_id`'s)."""
        svids = self.fetch_jwt_svids(audience, spiffe_id)
        if not svids:
            raise WorkloadApiError(f"FetchJWTSVID at {self.address} returned no JWT-SVID")
        return svids[0]

    def fetch_jwt_bundles(self, timeout: float | None = None) -> BundleSet:
        call = self._stub.FetchJWTBundles(
            workload_pb2.JWTBundlesRequest(), metadata=HEADER, timeout=timeout or self.timeout
        )
        return parse_jwt_bundles(self._first("FetchJWTBundles", call).bundles)

    def validate_jwt_svid(self, token: str, audience: str) -> ValidatedJwt:
        """Ask the agent to validate `token` for `audience`."""
        request = workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token)
        try:
            response = self._stub.ValidateJWTSVID(request, metadata=HEADER, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._error("ValidateJWTSVID", error) from None
        claims = _whole_numbers(json_format.MessageToDict(response.claims))
        return ValidatedJwt(SpiffeId.parse(response.spiffe_id), claims)

    # Streams.

    def stream_x509_contexts(self) -> Iterator[X509Context]:
        """Yield the X.509 context now and after every change; no reconnection."""
        call = self._stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
        try:
            for response in call:
                yield parse_x509_response(response)
        except grpc.RpcError as error:
            raise self._error("FetchX509SVID", error) from None
        finally:
            call.cancel()

    def watch_x509_context(
        self,
        on_update: Callable[[X509Context], None],
        on_error: Callable[[WorkloadApiError], None] | None = None,
    ) -> Watch:
        """Call `on_update` with every X.509 context, reconnecting on errors."""
        return self._watch(
            "FetchX509SVID",
            lambda: self._stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER),
            parse_x509_response,
            on_update,
            on_error,
        )

    def watch_jwt_bundles(
        self,
        on_update: Callable[[BundleSet], None],
        on_error: Callable[[WorkloadApiError], None] | None = None,
    ) -> Watch:
        """Call `on_update` with every set of JWT bundles, reconnecting on errors."""
        return self._watch(
            "FetchJWTBundles",
            lambda: self._stub.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=HEADER),
            lambda response: parse_jwt_bundles(response.bundles),
            on_update,
            on_error,
        )

    def _watch(
        self,
        method: str,
        open_call: Callable[[], Any],
        parse: Callable[[Any], Update],
        on_update: Callable[[Update], None],
        on_error: Callable[[WorkloadApiError], None] | None,
    ) -> Watch:
        def follow(watch: Watch) -> None:
            delay = RETRY_FIRST_SECONDS
            while not watch.cancelled:
                call = open_call()
                watch.set_call(call)
                try:
                    for response in call:
                        update = parse(response)
                        try:
                            on_update(update)
                        except Exception as error:
                            # The subscriber's failure is its own: the thread must keep
                            # following the stream, or no later rotation reaches anyone.
                            log.error(
                                "a Workload API subscriber failed",
                                extra={"error": repr(error), "path": method},
                            )
                        delay = RETRY_FIRST_SECONDS
                    problem = WorkloadApiError(f"{method} at {self.address}: the stream ended")
                except grpc.RpcError as error:
                    if watch.cancelled:
                        return
                    problem = self._error(method, error)
                except WorkloadApiError as error:
                    call.cancel()
                    problem = error
                if on_error is not None:
                    on_error(problem)
                if problem.code in _NOT_RETRIED:
                    log.error("Workload API stream stopped", extra={"error": str(problem)})
                    return
                log.warning(
                    "Workload API stream failed; reconnecting",
                    extra={"error": str(problem), "delay_seconds": delay},
                )
                if watch.wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX_SECONDS)

        return Watch(follow, f"warden-watch-{method}")

    def health_check(self, timeout: float | None = None) -> str:
        """Call the standard gRPC health service on the socket; return the status name."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise self._error("Health/Check", error) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _whole_numbers(value: Any) -> Any:
    # google.protobuf.Struct stores every number as a double; give `exp` and `iat` back as
    # the integers the token carries.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def claims_json(claims: dict[str, Any]) -> str:
    """Return claims as compact, sorted JSON, for printing."""
    return json.dumps(claims, sort_keys=True, separators=(",", ":"))
