"""Mutual TLS with X509-SVIDs on pyOpenSSL: contexts that follow rotation and check peers.

Python's `ssl` module has no certificate verification callback, so it can only trust one
merged set of CA certificates. These contexts use pyOpenSSL instead:

- OpenSSL's own chain check is overridden by a verify callback that, at the leaf, validates
  the chain the peer sent against the bundle of the peer's own trust domain only (the SPIFFE
  core's `validate_x509_svid`), then applies the `Authorizer`. A rejected peer fails the
  handshake with a TLS alert.
- pyOpenSSL refuses to change a context once a connection has used it, so every rotation of
  the source's SVID or bundles builds a new context, and each new connection takes the
  current one. Connections already open keep the certificate they started with.
- Session resumption is off, because a resumed session would skip the verify callback.

`warden.mtls.stdlib` builds `ssl.SSLContext`s for the cases `ssl` can check (a peer of one
known trust domain).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from OpenSSL import SSL, crypto

from warden.mtls.authorize import Authorizer
from warden.mtls.client import X509Svid
from warden.mtls.verify import PeerRejectedError, verify_peer
from warden.spiffe import Bundle, SpiffeId, TrustDomain

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0


class TlsSource(Protocol):
    """The part of an X.509 source the contexts use (`warden.mtls.X509Source` has it)."""

    @property
    def svid(self) -> X509Svid: ...

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None: ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]: ...


@dataclass
class _PeerCheck:
    """Per-connection state of the verify callback."""

    chain: dict[int, x509.Certificate] = field(default_factory=dict)
    spiffe_id: SpiffeId | None = None
    error: str | None = None
    done: bool = False


class MtlsContext:
    """One side (server or client) of mutual TLS for a source's SVID.

    `connection(sock)` wraps a connected socket (or None, for memory BIOs) in a
    `SSL.Connection` built from the current context. After the handshake,
    `peer_spiffe_id(connection)` returns the verified, authorised peer.
    """

    def __init__(self, source: TlsSource, authorizer: Authorizer, *, server: bool) -> None:
        self.source = source
        self.authorizer = authorizer
        self.server = server
        self._lock = threading.Lock()
        self._context = self._build()
        self._unsubscribe = source.subscribe(self._rebuild)

    def _build(self) -> SSL.Context:
        svid = self.source.svid
        context = SSL.Context(SSL.TLS_SERVER_METHOD if self.server else SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(svid.leaf)
        for intermediate in svid.chain[1:]:
            context.add_extra_chain_cert(intermediate)
        context.use_privatekey(svid.private_key)  # type: ignore[arg-type]
        context.check_privatekey()
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        context.set_options(SSL.OP_NO_TICKET)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if self.server:
            context.set_session_id(b"warden-mtls")
        return context

    def _rebuild(self) -> None:
        try:
            context = self._build()
        except Exception as error:
            log.error(
                "could not build a TLS context from the rotated SVID; keeping the previous one",
                extra={"error": str(error)},
            )
            return
        with self._lock:
            self._context = context
        log.info("TLS context updated", extra={"spiffe_id": str(self.source.svid.spiffe_id)})

    def _verify(
        self, connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int
    ) -> bool:
        # OpenSSL calls this for each certificate it could link, from the top of the chain
        # down to the leaf (sometimes several times per depth, once per error). Its own
        # result is ignored: there are no CAs in the context, so it always fails. At the
        # leaf, the collected chain is validated against the right bundle, once.
        state = connection.get_app_data()
        if not isinstance(state, _PeerCheck):
            return False
        if state.done:
            return state.spiffe_id is not None
        state.chain[depth] = certificate.to_cryptography()
        if depth > 0:
            return True
        chain = [state.chain[level] for level in sorted(state.chain)]
        state.done = True
        try:
            state.spiffe_id = verify_peer(chain, self.source, self.authorizer)
        except PeerRejectedError as problem:
            state.error = str(problem)
            log.warning("TLS peer rejected", extra={"error": state.error})
            return False
        return True

    def connection(self, sock: socket.socket | None) -> SSL.Connection:
        """Wrap `sock` for a handshake as this side (accept state or connect state)."""
        with self._lock:
            context = self._context
        connection = SSL.Connection(context, sock)
        connection.set_app_data(_PeerCheck())
        if self.server:
            connection.set_accept_state()
        else:
            connection.set_connect_state()
        return connection

    def close(self) -> None:
        """Stop following the source's rotations."""
        self._unsubscribe()


def server_context(source: TlsSource, authorizer: Authorizer) -> MtlsContext:
    """Return the server side: presents the SVID, requires and checks a client SVID."""
    return MtlsContext(source, authorizer, server=True)


def client_context(source: TlsSource, authorizer: Authorizer) -> MtlsContext:
    """Return the client side: presents the SVID, checks the server's SVID."""
    return MtlsContext(source, authorizer, server=False)


def peer_spiffe_id(connection: SSL.Connection) -> SpiffeId:
    """Return the verified and authorised SPIFFE ID of a connection's peer.

    Raises `PeerRejectedError` unless the handshake completed and the peer passed the
    checks, so a connection whose verification was skipped is never trusted.
    """
    state = connection.get_app_data()
    if not isinstance(state, _PeerCheck) or state.spiffe_id is None:
        reason = state.error if isinstance(state, _PeerCheck) and state.error else None
        raise PeerRejectedError(reason or "the peer's certificate was not verified")
    return state.spiffe_id


def handshake(connection: SSL.Connection, timeout: float | None = None) -> SpiffeId:
    """Run the handshake on the connection's socket and return the peer's SPIFFE ID.

    Works on blocking sockets and on sockets with a timeout (which Python makes
    non-blocking underneath); `timeout` bounds the whole handshake.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            connection.do_handshake()
            break
        except (SSL.WantReadError, SSL.WantWriteError) as want:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise PeerRejectedError("TLS handshake timed out") from None
            readers = [connection] if isinstance(want, SSL.WantReadError) else []
            writers = [connection] if isinstance(want, SSL.WantWriteError) else []
            select.select(readers, writers, [], remaining)
        except SSL.Error as error:
            state = connection.get_app_data()
            if isinstance(state, _PeerCheck) and state.error:
                raise PeerRejectedError(state.error) from None
            raise PeerRejectedError(f"TLS handshake failed: {error}") from None
    return peer_spiffe_id(connection)


def dial(
    host: str,
    port: int,
    context: MtlsContext,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[SSL.Connection, SpiffeId]:
    """Connect to `host:port`, run the mTLS handshake, return the connection and peer ID."""
    sock = socket.create_connection((host, port), timeout=timeout)
    # pyOpenSSL reads and writes need a blocking socket; the handshake has its own deadline.
    sock.setblocking(True)
    connection = context.connection(sock)
    try:
        peer = handshake(connection, timeout)
    except BaseException:
        sock.close()
        raise
    return connection, peer
