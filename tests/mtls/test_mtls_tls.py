"""Mutual TLS contexts: verification against the peer's own trust domain, authorisation by
SPIFFE ID, rotation, and the `ssl`-module contexts."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from agent_support import LocalCA
from mtls_support import StaticSource, issue
from OpenSSL import SSL

from warden.mtls import (
    PeerRejectedError,
    authorize_any,
    authorize_id,
    authorize_member_of,
    authorize_one_of,
    check_peer,
    client_context,
    dial,
    handshake,
    server_context,
    ssl_client_context,
    ssl_server_context,
)
from warden.mtls.authorize import Authorizer
from warden.mtls.tls import MtlsContext
from warden.spiffe import SpiffeId, TrustDomain

SERVER_ID = "spiffe://example.org/server"
CLIENT_ID = "spiffe://example.org/client"


class Result:
    def __init__(self) -> None:
        self.peer: SpiffeId | None = None
        self.error: Exception | None = None
        self.serial: int | None = None


@contextmanager
def tls_server(context: MtlsContext, connections: int = 1) -> Iterator[tuple[int, list[Result]]]:
    """Accept `connections` mTLS connections on 127.0.0.1, echoing one message each."""
    listener = socket.create_server(("127.0.0.1", 0))
    results: list[Result] = []

    def serve() -> None:
        for _ in range(connections):
            sock, _ = listener.accept()
            result = Result()
            results.append(result)
            connection = context.connection(sock)
            try:
                result.peer = handshake(connection)
                connection.sendall(b"echo:" + connection.recv(100))
                connection.shutdown()
            except Exception as error:
                result.error = error
            finally:
                sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], results
    finally:
        thread.join(10)
        listener.close()


def exchange(port: int, context: MtlsContext) -> tuple[SpiffeId, bytes, int]:
    connection, peer = dial("127.0.0.1", port, context)
    certificate = connection.get_peer_certificate()
    assert certificate is not None
    connection.sendall(b"hi")
    reply = connection.recv(100)
    connection.close()
    return peer, reply, certificate.to_cryptography().serial_number


@pytest.fixture
def ca() -> LocalCA:
    return LocalCA()


def test_mutual_tls_between_two_svids(ca: LocalCA) -> None:
    server_source = StaticSource(issue(ca, SERVER_ID), ca)
    client_source = StaticSource(issue(ca, CLIENT_ID), ca)
    server = server_context(server_source, authorize_id(CLIENT_ID))
    client = client_context(client_source, authorize_id(SERVER_ID))

    with tls_server(server) as (port, results):
        peer, reply, _ = exchange(port, client)

    assert peer == SpiffeId.parse(SERVER_ID)
    assert reply == b"echo:hi"
    assert results[0].error is None
    assert results[0].peer == SpiffeId.parse(CLIENT_ID)


def test_client_rejects_unexpected_server_id(ca: LocalCA) -> None:
    server = server_context(StaticSource(issue(ca, SERVER_ID), ca), authorize_any())
    client = client_context(
        StaticSource(issue(ca, CLIENT_ID), ca), authorize_id("spiffe://example.org/other")
    )

    with tls_server(server) as (port, _), pytest.raises(PeerRejectedError, match="not authorised"):
        dial("127.0.0.1", port, client)


def test_server_rejects_unauthorised_client(ca: LocalCA) -> None:
    server = server_context(
        StaticSource(issue(ca, SERVER_ID), ca), authorize_one_of(["spiffe://example.org/a"])
    )
    client = client_context(StaticSource(issue(ca, CLIENT_ID), ca), authorize_any())

    with (
        tls_server(server) as (port, results),
        pytest.raises((PeerRejectedError, OSError, SSL.Error)),
    ):
        exchange(port, client)

    assert isinstance(results[0].error, PeerRejectedError)
    assert "not authorised" in str(results[0].error)


def test_client_of_another_ca_rejected(ca: LocalCA) -> None:
    foreign = LocalCA()  # same trust domain name, different authority
    server = server_context(StaticSource(issue(ca, SERVER_ID), ca), authorize_any())
    client = client_context(StaticSource(issue(foreign, CLIENT_ID), ca), authorize_any())

    with (
        tls_server(server) as (port, results),
        pytest.raises((PeerRejectedError, OSError, SSL.Error)),
    ):
        exchange(port, client)

    assert "does not verify" in str(results[0].error)


def test_federated_peer_verified_by_own_bundle(ca: LocalCA) -> None:
    partner = LocalCA(trust_domain=TrustDomain("partner.org"))
    server = server_context(
        StaticSource(issue(ca, SERVER_ID), ca, partner), authorize_member_of("partner.org")
    )
    client = client_context(
        StaticSource(issue(partner, "spiffe://partner.org/billing"), partner, ca),
        authorize_id(SERVER_ID),
    )

    with tls_server(server) as (port, results):
        exchange(port, client)

    assert results[0].peer == SpiffeId.parse("spiffe://partner.org/billing")


def test_bundles_of_domains_never_merged(ca: LocalCA) -> None:
    # partner.org's CA is trusted, but only for partner.org: a certificate it signs for an
    # example.org ID must not verify against example.org's bundle.
    partner = LocalCA(trust_domain=TrustDomain("partner.org"))
    forged = issue_across(partner, "spiffe://example.org/admin")
    server = server_context(StaticSource(issue(ca, SERVER_ID), ca, partner), authorize_any())
    client = client_context(StaticSource(forged, ca), authorize_any())

    with (
        tls_server(server) as (port, results),
        pytest.raises((PeerRejectedError, OSError, SSL.Error)),
    ):
        exchange(port, client)

    assert isinstance(results[0].error, PeerRejectedError)
    assert results[0].peer is None


def issue_across(ca: LocalCA, spiffe_id: str):  # type: ignore[no-untyped-def]
    """Sign an SVID for an ID outside the CA's trust domain (the SPIFFE core refuses to)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from warden.mtls import X509Svid

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(seconds=10))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .add_extension(ca.ca.authority_key_identifier, critical=False)
        .sign(ca.ca.private_key, hashes.SHA256())
    )
    return X509Svid(SpiffeId.parse(spiffe_id), (leaf,), key)


def test_server_presents_rotated_svid(ca: LocalCA) -> None:
    source = StaticSource(issue(ca, SERVER_ID), ca)
    server = server_context(source, authorize_any())
    client = client_context(StaticSource(issue(ca, CLIENT_ID), ca), authorize_id(SERVER_ID))

    with tls_server(server, connections=2) as (port, results):
        _, _, before = exchange(port, client)
        rotated = issue(ca, SERVER_ID)
        source.rotate(rotated)
        _, _, after = exchange(port, client)

    assert before != after
    assert after == rotated.leaf.serial_number
    assert [result.error for result in results] == [None, None]


def test_authorizer_descriptions() -> None:
    assert authorize_id(SERVER_ID).describe() == SERVER_ID
    assert authorize_member_of("example.org").describe() == "a member of example.org"
    assert authorize_any().trust_domains is None
    assert authorize_one_of([SERVER_ID, "spiffe://b.org/x"]).trust_domains == {
        TrustDomain("example.org"),
        TrustDomain("b.org"),
    }
    with pytest.raises(ValueError, match="at least one"):
        authorize_one_of([])


# The ssl-module contexts.


def stdlib_exchange(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[SpiffeId | Exception, SpiffeId | Exception]:
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: dict[str, SpiffeId | Exception] = {}

    def serve() -> None:
        sock, _ = listener.accept()
        try:
            with server.wrap_socket(sock, server_side=True) as tls:
                outcome["server"] = check_peer(tls)
                tls.sendall(b"ok")
        except Exception as error:
            outcome["server"] = error

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname()) as sock,
            client.wrap_socket(sock) as tls,
        ):
            outcome["client"] = check_peer(tls)
            tls.recv(2)
    except Exception as error:
        outcome.setdefault("client", error)
    thread.join(10)
    listener.close()
    return outcome["server"], outcome["client"]


def test_stdlib_contexts_verify_both_sides(ca: LocalCA) -> None:
    server = ssl_server_context(StaticSource(issue(ca, SERVER_ID), ca), authorize_id(CLIENT_ID))
    client = ssl_client_context(StaticSource(issue(ca, CLIENT_ID), ca), authorize_id(SERVER_ID))

    seen_by_server, seen_by_client = stdlib_exchange(server, client)

    assert seen_by_server == SpiffeId.parse(CLIENT_ID)
    assert seen_by_client == SpiffeId.parse(SERVER_ID)


def test_stdlib_client_rejects_wrong_id(ca: LocalCA) -> None:
    server = ssl_server_context(
        StaticSource(issue(ca, SERVER_ID), ca), authorize_member_of("example.org")
    )
    client = ssl_client_context(
        StaticSource(issue(ca, CLIENT_ID), ca), authorize_id("spiffe://example.org/db")
    )

    _, seen_by_client = stdlib_exchange(server, client)

    assert isinstance(seen_by_client, PeerRejectedError)
    assert "not authorised" in str(seen_by_client)


def test_stdlib_server_rejects_other_ca(ca: LocalCA) -> None:
    foreign = LocalCA()
    server = ssl_server_context(
        StaticSource(issue(ca, SERVER_ID), ca), authorize_member_of("example.org")
    )
    client = ssl_client_context(
        StaticSource(issue(foreign, CLIENT_ID), ca), authorize_id(SERVER_ID)
    )

    seen_by_server, _ = stdlib_exchange(server, client)

    assert isinstance(seen_by_server, ssl.SSLError)


def test_stdlib_needs_single_trust_domain(ca: LocalCA) -> None:
    source = StaticSource(issue(ca, SERVER_ID), ca)

    with pytest.raises(ValueError, match="one trust domain only"):
        ssl_server_context(source, authorize_any())
    with pytest.raises(ValueError, match="one trust domain only"):
        ssl_client_context(
            source, Authorizer(domains=frozenset({TrustDomain("a.org"), TrustDomain("b.org")}))
        )


def test_stdlib_context_follows_rotation(ca: LocalCA) -> None:
    source = StaticSource(issue(ca, SERVER_ID), ca)
    server = ssl_server_context(source, authorize_member_of("example.org"))
    client = ssl_client_context(StaticSource(issue(ca, CLIENT_ID), ca), authorize_id(SERVER_ID))
    rotated = issue(ca, SERVER_ID)

    source.rotate(rotated)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        sock, _ = listener.accept()
        with server.wrap_socket(sock, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(listener.getsockname()) as sock, client.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.recv(2)
    thread.join(10)
    listener.close()

    from cryptography import x509

    assert der is not None
    assert x509.load_der_x509_certificate(der).serial_number == rotated.leaf.serial_number
