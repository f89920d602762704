"""The HTTP API listener: OIDC discovery, JWKS, token exchange and database credentials.

Routes (the OIDC ones also under the issuer's path, when `jwt_issuer` has one):

    GET  /.well-known/openid-configuration   discovery document (public)
    GET  /keys                               JWKS of the federation keys (public)
    POST /v1/token                           RFC 8693 token exchange (JWT-SVID as subject)
    POST /v1/database/creds/{role}           lease a database user (mTLS X509-SVID)
    POST /v1/leases/renew                    renew one's own lease (mTLS)
    POST /v1/leases/revoke                   revoke one's own lease (mTLS)
    POST /v1/leases/revoke-prefix            revoke leases by id prefix (mTLS, admin)
    GET  /v1/leases                          list one's own leases, or any for an admin,
                                             a page at a time

The listener serves TLS with the operator's certificate (`cert_file`, `key_file`), the one
cloud providers verify when they fetch the JWKS. It requests a client certificate without
requiring one. A client certificate must chain to the trust bundle and be an X509-SVID of
this trust domain, and its SPIFFE ID then identifies the caller. Without `cert_file` the
listener speaks plain HTTP, for loopback or behind a proxy that terminates TLS, and the
endpoints that need mTLS respond with 401.

`CredentialsRuntime` runs all of it for `WardenServer`: the listener, the database broker
and its sweeper, and the pruning of the `jti` replay cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from warden.server.http import HttpListener
from warden.spiffe import SpiffeError, SpiffeId, check_x509_svid_leaf
from warden.store.errors import DatabaseUnavailable
from warden.store.leases import MAX_LEASE_ID_LENGTH

if TYPE_CHECKING:
    from warden.credentials import DatabaseBroker, TokenExchanger
    from warden.credentials.replay import BatchedReplayCache
    from warden.server.app import WardenServer

log = logging.getLogger(__name__)

#: Largest request body accepted; a token request with two RS512 JWT-SVIDs is under 8 KiB.
MAX_BODY_BYTES = 64 * 1024
#: Time a client has to send a request's line and headers, counted from the connection or the
#: previous response, and then again to send its body. The listener is public, so a client
#: that sends nothing, or a byte at a time, is disconnected after this long.
REQUEST_TIMEOUT_SECONDS = 10.0
#: Connections the listener keeps open at once. Connections beyond it are closed as they
#: arrive, so that a flood of idle clients cannot use up the process's file descriptors.
MAX_CONNECTIONS = 512
#: Minimum time between two warnings about connections closed at the cap.
REJECTION_LOG_SECONDS = 60.0
#: How long the JWKS is served from memory before the datastore is read again.
JWKS_CACHE_SECONDS = 5.0
#: How often the listener checks the trust bundle for new client certificate authorities.
BUNDLE_CHECK_SECONDS = 5.0
#: How often expired `jti` values are deleted.
JTI_PRUNE_SECONDS = 60.0
#: Revoked leases are kept this long for governance, then deleted (their audit records stay).
LEASE_RETENTION = timedelta(days=30)
#: Largest `ttl` or `increment` accepted, in seconds (about 31 years).
MAX_SECONDS = 10**9
#: Maximum leases in one response of `GET /v1/leases`; a request may set a lower `limit`.
LEASE_PAGE_SIZE = 1000
#: Seconds a client should wait before it retries a request that failed because the
#: datastore could not be reached (the `Retry-After` header of a 503 response).
RETRY_AFTER_SECONDS = 5
# RFC 6749 section 5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"
# `error` codes of the database API's responses, by HTTP status.
_LEASE_ERROR_CODES = {
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    502: "backend_error",
    503: "unavailable",
}


# -- the caller's identity ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _spiffe_id_of_certificate(pem: str) -> tuple[SpiffeId, datetime] | str:
    """Return the SPIFFE ID and expiry of a verified client certificate, or why it is not an
    X509-SVID."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        return check_x509_svid_leaf(certificate), certificate.not_valid_after_utc
    except (SpiffeError, ValueError) as error:
        return str(error)


class CallerError(Exception):
    """The caller is not authenticated or not allowed; `status` is the HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def client_certificate_pem(request: Request) -> str | None:
    """Return the client certificate of the request's TLS connection, PEM, if one was sent.

    The listener's protocol puts it in the ASGI TLS extension (`client_cert_chain`).
    """
    extensions = request.scope.get("extensions") or {}
    chain = (extensions.get("tls") or {}).get("client_cert_chain") or []
    return chain[0] if chain else None


def peer_spiffe_id(request: Request, trust_domain: str, now: datetime) -> SpiffeId | None:
    """Return the caller's SPIFFE ID from its X509-SVID, None without a client certificate.

    The TLS handshake has verified the chain against the trust bundle, but only once, so the
    expiry is checked again at `now`: a kept-alive connection outlives its certificate. Raises
    CallerError for a certificate that is not an X509-SVID of `trust_domain` or has expired.
    """
    pem = client_certificate_pem(request)
    if pem is None:
        return None
    checked = _spiffe_id_of_certificate(pem)
    if isinstance(checked, str):
        raise CallerError(401, "invalid_client", f"the client certificate is rejected: {checked}")
    identity, expires_at = checked
    if now > expires_at:
        raise CallerError(
            401,
            "invalid_client",
            f"the client certificate for {identity} expired at {expires_at.isoformat()}; "
            "connect again with the workload's current X509-SVID",
        )
    if identity.trust_domain.name != trust_domain:
        raise CallerError(
            401,
            "invalid_client",
            f"the client certificate is for {identity}, outside trust domain {trust_domain}",
        )
    return identity


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- the listener -----------------------------------------------------------------------------


def _tls_extension(app: Any, tls: dict[str, Any]) -> Any:
    """Wrap an ASGI app so that every request's scope carries the connection's TLS facts."""

    async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            scope = dict(scope)
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return with_tls


class _RejectionLog:
    """Warning about connections closed at the cap, logged once per REJECTION_LOG_SECONDS."""

    def __init__(self) -> None:
        self.rejected = 0
        self.logged_at = -REJECTION_LOG_SECONDS

    def count_one(self) -> None:
        self.rejected += 1
        if time.monotonic() - self.logged_at < REJECTION_LOG_SECONDS:
            return
        log.warning(
            "HTTP API connections closed: too many open connections",
            extra={"count": self.rejected, "maximum": MAX_CONNECTIONS},
        )
        self.rejected = 0
        self.logged_at = time.monotonic()


def client_certificate_protocol() -> type[asyncio.Protocol]:
    """Return uvicorn's HTTP protocol, extended to put the client certificate in the scope.

    uvicorn does not implement the ASGI TLS extension, so the protocol reads the peer
    certificate when the connection is made and adds `client_cert_chain` to each request.
    The protocol also closes connections beyond MAX_CONNECTIONS, and connections that send
    no complete request line and headers within REQUEST_TIMEOUT_SECONDS. uvicorn's own
    keep-alive timer restarts with every byte received, so it does not stop a client that
    sends a byte at a time.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol
    rejections = _RejectionLog()

    class ClientCertificateProtocol(base):
        app: Any
        connections: set[Any]
        transport: asyncio.Transport

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            if len(self.connections) > MAX_CONNECTIONS:
                rejections.count_one()
                transport.close()
                return
            app = self.app
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                der = ssl_object.getpeercert(binary_form=True)
                tls: dict[str, Any] = {
                    "tls_version": ssl_object.version(),
                    "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                }
                app = _tls_extension(app, tls)
            self._inner_app = app
            self.app = self._serve
            self._arm_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_deadline()
            super().connection_lost(exc)

        async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            # uvicorn calls the app once a request's line and headers have arrived.
            self._disarm_deadline()
            try:
                await self._inner_app(scope, receive, send)
            finally:
                self._arm_deadline()

        def _arm_deadline(self) -> None:
            self._disarm_deadline()
            if not self.transport.is_closing():
                loop = asyncio.get_running_loop()
                self._deadline = loop.call_later(REQUEST_TIMEOUT_SECONDS, self._timed_out)

        def _disarm_deadline(self) -> None:
            deadline = getattr(self, "_deadline", None)
            if deadline is not None:
                deadline.cancel()
                self._deadline = None

        def _timed_out(self) -> None:
            self._deadline = None
            self.transport.close()

    return ClientCertificateProtocol


class HttpApiListener(HttpListener):
    """An `HttpListener` whose requests carry the client certificate (ASGI TLS extension)."""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        import socket

        import uvicorn

        from warden.server.http import _EmbeddedServer

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # With proto IPPROTO_TCP (not 0), asyncio sets TCP_NODELAY on accepted connections.
        # Without it, a response's headers and body leave in two segments and the body
        # waits about 40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            raise OSError(
                error.errno,
                f"{self.name}: cannot listen on {self.host}:{self.port}: {error.strerror}; "
                "choose another bind_address or bind_port in http_api",
            ) from error
        sock.listen(1024)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            loop="none",
            http=client_certificate_protocol(),
        )
        config.load()
        config.ssl = ssl_context
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(200):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        scheme = "https" if ssl_context is not None else "http"
        log.info(
            "HTTP API listening",
            extra={"address": f"{scheme}://{self.host}:{self.port}", "path": self.name},
        )
        return self.port


def build_tls_context(cert_file: str, key_file: str, bundle_pem: str) -> ssl.SSLContext:
    """Build the listener's TLS context: the operator's certificate, optional client SVIDs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    # Clients without a certificate are served (cloud providers fetching the JWKS); a
    # certificate that is sent must chain to the trust bundle.
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=bundle_pem)
    context.set_alpn_protocols(["http/1.1"])
    return context


# -- request helpers --------------------------------------------------------------------------


def _error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**_NO_STORE, **headers},
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise CallerError(413, "invalid_request", f"the body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise CallerError(
                        413, "invalid_request", f"the body exceeds {MAX_BODY_BYTES} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise CallerError(
            408,
            "invalid_request",
            f"the body did not arrive within {REQUEST_TIMEOUT_SECONDS:g} s; send it at once",
        ) from None
    except ClientDisconnect:
        raise CallerError(
            400, "invalid_request", "the client disconnected before sending the whole body"
        ) from None
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, list[str]]:
    """Read an `application/x-www-form-urlencoded` body, as RFC 6749 requires of requests."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM:
        raise CallerError(
            400, "invalid_request", f"the body must be {_FORM}, got {media_type or 'none'}"
        )
    body = await _read_body(request)
    try:
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as error:
        raise CallerError(400, "invalid_request", f"the form body is malformed: {error}") from None


async def read_json(request: Request) -> dict[str, Any]:
    """Read a JSON object body; an empty body is an empty object."""
    body = await _read_body(request)
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise CallerError(400, "invalid_request", f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise CallerError(400, "invalid_request", "the body must be a JSON object")
    return document


def _seconds(document: dict[str, Any], key: str) -> timedelta | None:
    value = document.get(key)
    if value is None:
        return None
    # Beyond datetime's range, a duration would fail as an internal error, not a bad request.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SECONDS:
        raise CallerError(
            400,
            "invalid_request",
            f"{key} must be a positive whole number of seconds, at most {MAX_SECONDS}",
        )
    return timedelta(seconds=value)


def _string(document: dict[str, Any], key: str, max_length: int = MAX_LEASE_ID_LENGTH) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise CallerError(400, "invalid_request", f"{key} is missing; send it as a JSON string")
    if len(value) > max_length:
        raise CallerError(
            400,
            "invalid_request",
            f"{key} is {len(value)} characters long; the maximum is {max_length}",
        )
    return value


def _query_string(request: Request, key: str) -> str | None:
    value = request.query_params.get(key) or None
    if value is not None and len(value) > MAX_LEASE_ID_LENGTH:
        raise CallerError(
            400,
            "invalid_request",
            f"{key} is {len(value)} characters long; the maximum is {MAX_LEASE_ID_LENGTH}",
        )
    return value


def _page_size(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return LEASE_PAGE_SIZE
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= LEASE_PAGE_SIZE:
        raise CallerError(
            400, "invalid_request", f"limit must be a whole number from 1 to {LEASE_PAGE_SIZE}"
        )
    return int(text)


def _datastore_unavailable(request: Request, error: Exception, code: str) -> JSONResponse:
    log.error(
        "HTTP API request failed: datastore unavailable",
        extra={"path": request.url.path, "error": str(error)},
    )
    return _error(
        503,
        code,
        "the datastore cannot be reached; retry later",
        **{"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _lease_document(lease: Any, now: datetime) -> dict[str, Any]:
    return {
        "lease_id": lease.lease_id,
        "spiffe_id": lease.spiffe_id,
        "owners": list(lease.owners),
        "state": lease.state(now),
        "created_at": lease.created_at.isoformat(),
        "expires_at": lease.expires_at.isoformat(),
        "max_expires_at": lease.max_expires_at.isoformat(),
        "revoked_at": lease.revoked_at.isoformat() if lease.revoked_at else None,
        "revoke_reason": lease.revoke_reason,
        "lease_duration": max(0, int((lease.expires_at - now).total_seconds())),
        "details": dict(lease.details),
    }


# -- the application --------------------------------------------------------------------------


class HttpApi:
    """The routes of the HTTP API, bound to one server."""

    def __init__(
        self,
        server: WardenServer,
        exchanger: TokenExchanger | None,
        broker: DatabaseBroker | None,
    ) -> None:
        self.server = server
        self.exchanger = exchanger
        self.broker = broker
        self.trust_domain = server.options.trust_domain.name
        self._jwks: tuple[float, dict[str, Any]] | None = None

    def routes(self) -> list[BaseRoute]:
        api: list[BaseRoute] = [
            Route("/v1/token", self.token, methods=["POST"]),
            Route("/v1/database/creds/{role}", self.database_creds, methods=["POST"]),
            Route("/v1/leases/renew", self.renew_lease, methods=["POST"]),
            Route("/v1/leases/revoke", self.revoke_lease, methods=["POST"]),
            Route("/v1/leases/revoke-prefix", self.revoke_prefix, methods=["POST"]),
            Route("/v1/leases", self.list_leases, methods=["GET"]),
        ]
        if self.exchanger is None:
            return api
        from warden.credentials.oidc import DISCOVERY_PATH, JWKS_PATH, issuer_path

        oidc: list[BaseRoute] = [
            Route(DISCOVERY_PATH, self.discovery, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
        ]
        prefix = issuer_path(self.exchanger.issuer)
        if prefix:
            # Behind a proxy that keeps the issuer's path, and on a direct request alike.
            return [Mount(prefix, routes=[*oidc, *api]), *oidc, *api]
        return [*oidc, *api]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    async def _guard(
        self, request: Request, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        from warden.credentials import CredentialError, LeaseError

        try:
            return await handler()
        except CallerError as error:
            self._log_rejection(request, error.status, error.description)
            return _error(error.status, error.error, error.description)
        except LeaseError as error:
            self._log_rejection(request, error.status, str(error))
            return _error(
                error.status, _LEASE_ERROR_CODES.get(error.status, "invalid_request"), str(error)
            )
        except CredentialError as error:
            self._log_rejection(request, 400, str(error))
            return _error(400, "invalid_request", str(error))
        except DatabaseUnavailable as error:
            return _datastore_unavailable(request, error, "unavailable")
        except Exception as error:
            log.error(
                "HTTP API request failed",
                extra={"path": request.url.path, "error": str(error)},
                exc_info=True,
            )
            return _error(500, "server_error", "internal error; see the server log")

    @staticmethod
    def _log_rejection(request: Request, status: int, error: str) -> None:
        log.info(
            "HTTP API request rejected",
            extra={
                "path": request.url.path,
                "status": status,
                "address": _client_address(request),
                "error": error,
            },
        )

    # OIDC discovery.

    async def _federation_jwks(self) -> dict[str, Any]:
        from warden.credentials.oidc import public_jwks

        cached = self._jwks
        if cached is not None and time.monotonic() - cached[0] < JWKS_CACHE_SECONDS:
            return cached[1]
        raw = await self.server.run(self.server.ca.federation_jwks, self.server.clock())
        jwks = public_jwks(raw)
        self._jwks = (time.monotonic(), jwks)
        return jwks

    async def discovery(self, request: Request) -> Response:
        from warden.credentials.oidc import discovery_document, key_algorithms

        assert self.exchanger is not None
        try:
            jwks = await self._federation_jwks()
        except DatabaseUnavailable as error:
            return _datastore_unavailable(request, error, "temporarily_unavailable")
        document = discovery_document(self.exchanger.issuer, key_algorithms(jwks))
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    async def jwks(self, request: Request) -> Response:
        try:
            jwks = await self._federation_jwks()
        except DatabaseUnavailable as error:
            return _datastore_unavailable(request, error, "temporarily_unavailable")
        return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=60"})

    # Token exchange.

    async def token(self, request: Request) -> Response:
        from warden.credentials import ExchangeError, parse_exchange_request

        if self.exchanger is None:
            return _error(
                404,
                "invalid_request",
                "token exchange is off: set server.jwt_issuer to the public https:// URL of the "
                "HTTP API",
            )
        peer: SpiffeId | None = None
        audience = ""
        try:
            peer = peer_spiffe_id(request, self.trust_domain, self.server.clock())
            form = await read_form(request)
            audience = (form.get("audience") or form.get("resource") or [""])[0]
            exchange_request = parse_exchange_request(form, peer)
            result = await asyncio.to_thread(self.exchanger.exchange, exchange_request)
        except CallerError as error:
            self._log_rejection(request, error.status, error.description)
            await self._audit_rejection(
                ExchangeError(error.error, error.description), request, peer, audience
            )
            return _error(error.status, error.error, error.description)
        except ExchangeError as error:
            log.info(
                "token exchange rejected",
                extra={"spiffe_id": error.subject, "error": error.description},
            )
            await self._audit_rejection(error, request, peer, audience)
            return _error(400, error.error, error.description)
        except DatabaseUnavailable as error:
            return _datastore_unavailable(request, error, "temporarily_unavailable")
        except Exception as error:
            log.error("token exchange failed", extra={"error": str(error)}, exc_info=True)
            return _error(500, "server_error", "the token could not be issued; see the server log")
        # The record is committed before the token leaves the server: without it, no token.
        try:
            await self.server.audit.record(
                result.audit_event(str(peer) if peer else result.subject)
            )
        except DatabaseUnavailable as error:
            return _datastore_unavailable(request, error, "temporarily_unavailable")
        log.info(
            "token issued",
            extra={
                "spiffe_id": result.subject,
                "audience": result.audience,
                "token_id": result.token_id,
            },
        )
        return JSONResponse(result.to_response(), headers=_NO_STORE)

    async def _audit_rejection(
        self, error: Any, request: Request, peer: SpiffeId | None, audience: str
    ) -> None:
        from warden.credentials import rejection_audit_event

        actor = str(peer) if peer is not None else f"address:{_client_address(request)}"
        try:
            await self.server.audit.record(rejection_audit_event(error, actor, audience))
        except Exception as failure:
            log.error("audit of a rejected token exchange failed", extra={"error": str(failure)})

    # Database credentials and leases.

    def _require_peer(self, request: Request) -> SpiffeId:
        peer = peer_spiffe_id(request, self.trust_domain, self.server.clock())
        if peer is None:
            raise CallerError(
                401,
                "unauthorized",
                "present your X509-SVID as the TLS client certificate; database credentials "
                "are issued over mTLS only",
            )
        return peer

    def _require_broker(self) -> DatabaseBroker:
        if self.broker is None:
            raise CallerError(
                404, "not_found", "database credentials are off: the server has no database block"
            )
        return self.broker

    def _is_admin(self, spiffe_id: SpiffeId) -> bool:
        return spiffe_id in self.server.options.admin_ids or self.server.is_admin_spiffe_id(
            str(spiffe_id)
        )

    async def _owners(self, spiffe_id: SpiffeId) -> list[str]:
        entries = await self.server.run(
            self.server.datastore.list_entries, spiffe_id=str(spiffe_id)
        )
        return sorted({entry.owner for entry in entries})

    async def database_creds(self, request: Request) -> Response:
        from warden.credentials import LeaseError, NotAuthorized

        async def handle() -> Response:
            broker = self._require_broker()
            peer = self._require_peer(request)
            document = await read_json(request)
            owners = await self._owners(peer)
            issued = await broker.issue(
                request.path_params["role"],
                str(peer),
                owners,
                actor=str(peer),
                ttl=_seconds(document, "ttl"),
            )
            if not await self._owners(peer):
                # The last entry was deleted after the owners were read, and its deletion
                # revoked the caller's leases before this one was stored.
                with contextlib.suppress(LeaseError):
                    await broker.revoke(
                        issued.lease.lease_id, actor=str(peer), reason="entry_deleted"
                    )
                raise NotAuthorized(
                    f"{peer} is carried by no registration entry any more, so its new lease "
                    "was revoked; register the workload with an owner first"
                )
            return JSONResponse(issued.to_response(self.server.clock()), headers=_NO_STORE)

        return await self._guard(request, handle)

    async def renew_lease(self, request: Request) -> Response:
        async def handle() -> Response:
            broker = self._require_broker()
            peer = self._require_peer(request)
            document = await read_json(request)
            lease = await broker.renew(
                _string(document, "lease_id"),
                actor=str(peer),
                spiffe_id=None if self._is_admin(peer) else str(peer),
                increment=_seconds(document, "increment"),
            )
            return JSONResponse(_lease_document(lease, self.server.clock()), headers=_NO_STORE)

        return await self._guard(request, handle)

    async def revoke_lease(self, request: Request) -> Response:
        async def handle() -> Response:
            broker = self._require_broker()
            peer = self._require_peer(request)
            document = await read_json(request)
            lease = await broker.revoke(
                _string(document, "lease_id"),
                actor=str(peer),
                spiffe_id=None if self._is_admin(peer) else str(peer),
            )
            return JSONResponse(_lease_document(lease, self.server.clock()), headers=_NO_STORE)

        return await self._guard(request, handle)

    async def revoke_prefix(self, request: Request) -> Response:
        async def handle() -> Response:
            broker = self._require_broker()
            peer = self._require_peer(request)
            if not self._is_admin(peer):
                raise CallerError(
                    403, "forbidden", f"{peer} is not an admin; revoking by prefix needs one"
                )
            document = await read_json(request)
            summary = await broker.revoke_prefix(_string(document, "prefix"), actor=str(peer))
            return JSONResponse(
                {"revoked": list(summary.revoked), "failed": list(summary.failed)},
                status_code=200 if not summary.failed else 502,
            )

        return await self._guard(request, handle)

    async def list_leases(self, request: Request) -> Response:
        """List leases in id order, at most `limit` (LEASE_PAGE_SIZE) per response.

        A response with `truncated: true` names in `next_after` the id to send as `after`
        for the next page.
        """

        async def handle() -> Response:
            peer = self._require_peer(request)
            prefix = _query_string(request, "prefix")
            after = _query_string(request, "after")
            limit = _page_size(request)
            holder = None if self._is_admin(peer) else str(peer)
            # One more than the page, to tell whether another page follows.
            leases = await self.server.run(
                self.server.datastore.list_leases,
                prefix=prefix,
                spiffe_id=holder,
                limit=limit + 1,
                after=after,
            )
            truncated = len(leases) > limit
            leases = leases[:limit]
            now = self.server.clock()
            return JSONResponse(
                {
                    "leases": [_lease_document(lease, now) for lease in leases],
                    "truncated": truncated,
                    "next_after": leases[-1].lease_id if truncated else None,
                },
                headers=_NO_STORE,
            )

        return await self._guard(request, handle)


# -- wiring into the server -------------------------------------------------------------------


class CredentialsRuntime:
    """Everything of the credential brokers that runs inside `WardenServer`."""

    def __init__(self, server: WardenServer) -> None:
        self.server = server
        self.exchanger: TokenExchanger | None = None
        self.broker: DatabaseBroker | None = None
        self.listener: HttpApiListener | None = None
        self.port: int | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._bundle_sequence: int | None = None
        self._replay: BatchedReplayCache | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the broker's sweeper and the HTTP API listener, as configured."""
        options = self.server.options
        if options.database is not None:
            from warden.credentials import DatabaseBroker

            self.broker = DatabaseBroker(
                options.database,
                self.server.datastore,
                clock=self.server.clock,
                sweep_interval=options.database_sweep_interval,
            )
            self._tasks.append(asyncio.create_task(self.broker.run_sweeper(), name="lease-sweeper"))
        if options.http_api is None:
            return
        self.exchanger = self._build_exchanger()
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="jti-prune"))
        api = HttpApi(self.server, self.exchanger, self.broker)
        http = options.http_api
        self.listener = HttpApiListener(api.app(), http.bind_address, http.bind_port, "HTTP API")
        if http.cert_file is not None and http.key_file is not None:
            self._tls_context = build_tls_context(
                str(http.cert_file), str(http.key_file), self.server.bundle.to_pem()
            )
            self._bundle_sequence = self.server.bundle.sequence_number
            self._tasks.append(asyncio.create_task(self._watch_bundle(), name="http-api-bundle"))
        elif http.bind_address not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "the HTTP API serves plain HTTP on a non-loopback address; set cert_file and "
                "key_file, or put it behind a proxy that terminates TLS",
                extra={"address": http.bind_address},
            )
        self.port = await self.listener.start(self._tls_context)

    def _build_exchanger(self) -> TokenExchanger | None:
        from warden.credentials import TokenExchanger, TokenExchangeSettings
        from warden.credentials.oidc import validate_issuer
        from warden.credentials.replay import BatchedReplayCache

        options = self.server.options
        if not options.jwt_issuer:
            log.warning(
                "OIDC discovery and token exchange are off: set server.jwt_issuer to the public "
                "https:// URL of the HTTP API"
            )
            return None
        issuer = validate_issuer(options.jwt_issuer)
        settings = options.token_exchange or TokenExchangeSettings()
        self._replay = BatchedReplayCache(self.server.datastore.remember_jtis)
        return TokenExchanger(
            settings,
            issuer=issuer,
            bundles=lambda: self.server.bundle,
            signer=self.server.ca,
            replay=self._replay,
            clock=self.server.clock,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                log.error("background task did not stop", extra={"task": task.get_name()})
        self._tasks.clear()
        if self.listener is not None:
            await self.listener.stop()
        if self._replay is not None:
            await asyncio.to_thread(self._replay.close)
        if self.broker is not None:
            await self.broker.close()

    async def entry_deleted(self, entry: Any, actor: str) -> None:
        """Revoke the leases of the entry's SPIFFE ID when no other entry carries it."""
        if self.broker is None:
            return
        remaining = await self.server.run(
            self.server.datastore.list_entries, spiffe_id=entry.spiffe_id, limit=1
        )
        if remaining:
            return
        from warden.credentials import CredentialError

        try:
            summary = await self.broker.revoke_holder(
                entry.spiffe_id, actor=actor, reason="entry_deleted"
            )
        except CredentialError as error:
            log.error(
                "revoking the leases of a deleted entry failed; the sweepers retry",
                extra={"entry_id": entry.id, "spiffe_id": entry.spiffe_id, "error": str(error)},
            )
            return
        if summary.revoked or summary.failed:
            log.info(
                "leases of a deleted entry revoked",
                extra={
                    "entry_id": entry.id,
                    "spiffe_id": entry.spiffe_id,
                    "count": len(summary.revoked),
                    "failed": len(summary.failed),
                },
            )

    async def _watch_bundle(self) -> None:
        """Trust new X.509 authorities for client certificates as the bundle gains them."""
        while True:
            await asyncio.sleep(BUNDLE_CHECK_SECONDS)
            bundle = self.server.bundle
            if bundle.sequence_number == self._bundle_sequence or self._tls_context is None:
                continue
            # Certificates can be added to a context but not removed; an expired authority
            # no longer verifies anything, so keeping it is harmless.
            self._tls_context.load_verify_locations(cadata=bundle.to_pem())
            self._bundle_sequence = bundle.sequence_number
            log.info("HTTP API trusts the new bundle", extra={"sequence": bundle.sequence_number})

    async def _prune_loop(self) -> None:
        last_lease_prune = 0.0
        while True:
            await asyncio.sleep(JTI_PRUNE_SECONDS)
            try:
                await self.server.run(self.server.datastore.prune_jti)
                if time.monotonic() - last_lease_prune > 3600:
                    cutoff = self.server.clock() - LEASE_RETENTION
                    await self.server.run(self.server.datastore.prune_leases, cutoff)
                    last_lease_prune = time.monotonic()
            except Exception as error:
                log.error("pruning the replay cache failed", extra={"error": str(error)})


# -- configuration ----------------------------------------------------------------------------


def credential_options(config: Any) -> dict[str, Any]:
    """Return the `ServerOptions` fields of a loaded configuration's credential blocks.

    Covers `http_api`, `token_exchange` and `database`.
    """
    from warden.credentials import (
        ConnectionSettings,
        DatabaseSettings,
        ExchangeRule,
        RoleSettings,
        SpiffeIdPattern,
        TokenExchangeSettings,
        parse_patterns,
    )
    from warden.server.options import HttpApiOptions

    values: dict[str, Any] = {}
    if config.http_api is not None:
        block = config.http_api
        values["http_api"] = HttpApiOptions(
            bind_address=block.bind_address,
            bind_port=block.bind_port,
            cert_file=block.cert_file,
            key_file=block.key_file,
        )
    if config.token_exchange is not None:
        block = config.token_exchange
        rules = tuple(
            ExchangeRule(
                subjects=(SpiffeIdPattern.parse(pattern),),
                audiences=tuple(rule.audiences),
                actors=parse_patterns(list(rule.actors)),
                ttl=rule.ttl,
            )
            for pattern, rule in block.allow.items()
        )
        values["token_exchange"] = TokenExchangeSettings(
            rules=rules,
            audience=block.audience,
            default_ttl=block.default_ttl,
            max_ttl=block.max_ttl,
            require_jti=block.require_jti,
            leeway=block.leeway,
        )
    if config.database is not None:
        block = config.database
        connections = {
            name: ConnectionSettings(
                name=name,
                url=connection.connection_url.get_secret_value(),
                password=(
                    connection.password.get_secret_value()
                    if connection.password is not None
                    else None
                ),
                password_file=connection.password_file,
                reassign_owned_to=connection.reassign_owned_to,
                connect_timeout=connection.connect_timeout,
                statement_timeout=connection.statement_timeout,
            )
            for name, connection in block.connection.items()
        }
        roles = {
            name: RoleSettings(
                name=name,
                connection=role.connection,
                creation_statements=tuple(role.creation_statements),
                allowed_spiffe_ids=parse_patterns(list(role.allowed_spiffe_ids)),
                default_ttl=role.default_ttl,
                max_ttl=role.max_ttl,
            )
            for name, role in block.role.items()
        }
        values["database"] = DatabaseSettings(connections=connections, roles=roles)
        values["database_sweep_interval"] = block.sweep_interval
    return values
