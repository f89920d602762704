"""`ssl.SSLContext`s for X509-SVIDs, where Python's `ssl` module can do the check.

`ssl` has no verification callback: OpenSSL verifies the peer's chain against the CA
certificates loaded into the context, and nothing else. That is sound for SPIFFE only when
the peer's trust domain is known in advance and the context trusts that one domain's bundle,
so these contexts require an authorizer limited to a single trust domain (an exact ID, IDs of
one domain, or membership of one domain). After the handshake, `check_peer` applies the
X509-SVID leaf rules and the authorizer; call it before exchanging any data. For peers of
several trust domains use `warden.mtls.tls` (pyOpenSSL).

On rotation the context is updated in place: the new certificate and any new CA certificates
apply to connections made afterwards. `ssl` cannot remove a CA from a context, so a CA
dropped from the bundle stays trusted by this context until its certificate expires. Pass the
event loop that uses the context as `loop` and updates run on that loop's thread; without it
they run on the source's thread.

NOTE: with `loop=None`, an update may run while another thread creates a connection from the
same context, and OpenSSL does not promise that this is safe; asyncio servers should pass
their loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography import x509

from warden.mtls.authorize import Authorizer
from warden.mtls.tls import TlsSource
from warden.mtls.verify import PeerRejectedError
from warden.spiffe import SpiffeError, SpiffeId, TrustDomain, check_x509_svid_leaf

log = logging.getLogger(__name__)


class SpiffeSSLContext(ssl.SSLContext):
    """An `ssl.SSLContext` that follows an X.509 source for one peer trust domain."""

    trust_domain: TrustDomain
    authorizer: Authorizer
    stop_updates: Callable[[], None]


def _single_trust_domain(authorizer: Authorizer) -> TrustDomain:
    domains = authorizer.trust_domains
    if domains is None or len(domains) != 1:
        raise ValueError(
            f"an ssl.SSLContext can verify peers of one trust domain only, and the authorizer "
            f"accepts {authorizer.describe()}; use warden.mtls.tls.server_context or "
            "client_context (pyOpenSSL) for peers of several trust domains"
        )
    return next(iter(domains))


@contextlib.contextmanager
def _private_pem_path(pem: bytes) -> Iterator[str]:
    """Yield a path from which `ssl` can read `pem`, which holds a private key.

    `ssl` loads keys only from files. On Linux an anonymous memory file keeps the key off
    any file system; elsewhere a file in a fresh mode 0700 directory is removed at once.
    """
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("warden-svid", os.MFD_CLOEXEC)
        try:
            os.write(descriptor, pem)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="warden-svid-") as directory:
        path = Path(directory) / "svid.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        yield str(path)


def _load(context: SpiffeSSLContext, source: TlsSource) -> None:
    bundle = source.get_bundle_for_trust_domain(context.trust_domain)
    if bundle is None or not bundle.x509_authorities:
        raise ValueError(
            f"the Workload API gave no X.509 bundle for trust domain {context.trust_domain}; "
            "the workload's entries must federate with it"
        )
    context.load_verify_locations(cadata=bundle.to_pem())
    svid = source.svid
    with _private_pem_path(svid.chain_pem() + svid.key_pem()) as path:
        context.load_cert_chain(path)


def _build(
    protocol: int,
    source: TlsSource,
    authorizer: Authorizer,
    loop: asyncio.AbstractEventLoop | None,
) -> SpiffeSSLContext:
    context = SpiffeSSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.trust_domain = _single_trust_domain(authorizer)
    context.authorizer = authorizer
    _load(context, source)

    def update() -> None:
        try:
            _load(context, source)
        except (ValueError, ssl.SSLError) as error:
            log.error(
                "could not load the rotated SVID into the TLS context; keeping the previous one",
                extra={"error": str(error)},
            )

    def schedule() -> None:
        if loop is not None:
            loop.call_soon_threadsafe(update)
        else:
            update()

    context.stop_updates = source.subscribe(schedule)
    return context


def ssl_server_context(
    source: TlsSource, authorizer: Authorizer, *, loop: asyncio.AbstractEventLoop | None = None
) -> SpiffeSSLContext:
    """Return a server context that requires a client SVID of the authorizer's trust domain."""
    return _build(ssl.PROTOCOL_TLS_SERVER, source, authorizer, loop)


def ssl_client_context(
    source: TlsSource, authorizer: Authorizer, *, loop: asyncio.AbstractEventLoop | None = None
) -> SpiffeSSLContext:
    """Return a client context that verifies the server against its trust domain's bundle."""
    return _build(ssl.PROTOCOL_TLS_CLIENT, source, authorizer, loop)


def check_peer(connection: ssl.SSLSocket | ssl.SSLObject) -> SpiffeId:
    """Check a handshaken connection's peer: X509-SVID leaf rules and the authorizer.

    Raises `PeerRejectedError`; close the connection without sending data when it does.
    """
    context = connection.context
    if not isinstance(context, SpiffeSSLContext):
        raise TypeError("check_peer needs a connection made from a warden.mtls.stdlib context")
    der = connection.getpeercert(binary_form=True)
    if not der:
        raise PeerRejectedError("the peer presented no certificate")
    try:
        spiffe_id = check_x509_svid_leaf(x509.load_der_x509_certificate(der))
    except (SpiffeError, ValueError) as error:
        raise PeerRejectedError(f"peer certificate rejected: {error}") from None
    # OpenSSL checked the chain against this trust domain's bundle only, so a peer of
    # another domain would be vouched for by the wrong authorities.
    if spiffe_id.trust_domain != context.trust_domain:
        raise PeerRejectedError(
            f"peer {spiffe_id} is not in trust domain {context.trust_domain}, whose bundle "
            "verified it"
        )
    if not context.authorizer(spiffe_id):
        raise PeerRejectedError(
            f"peer {spiffe_id} is not authorised: expected {context.authorizer.describe()}"
        )
    return spiffe_id
