"""A workload built on the SPIFFE project's Python client (`spiffe`, `spiffe-tls` on PyPI).

The tests run it as a separate process, because the `spiffe` package registers its own copy
of the Workload API proto in protobuf's default pool, which clashes with Warden's. Every
command prints JSON lines on standard output:

    pyspiffe_client.py fetch SOCKET AUDIENCE
    pyspiffe_client.py watch SOCKET COUNT
    pyspiffe_client.py serve SOCKET COUNT      (prints {"port": N} first, then one line per peer)
    pyspiffe_client.py dial SOCKET PORT EXPECTED_SPIFFE_ID
    pyspiffe_client.py error SOCKET            (prints the error of a one-shot X.509 fetch)

With WARDEN_TEST_GROUPS=1111,2222 in the environment the process first sets those
supplementary groups, which gives it `unix:supplementary_gid` selectors of its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def fetch(socket_path: str, audience: str) -> None:
    from spiffe import JwtSource, WorkloadApiClient, X509Source

    with WorkloadApiClient(socket_path=f"unix:{socket_path}", default_timeout=10) as client:
        svid = client.fetch_x509_svid()
        svids = client.fetch_x509_svids()
        bundles = client.fetch_x509_bundles()
        jwt_svid = client.fetch_jwt_svid(audience={audience})
        validated = client.validate_jwt_svid(jwt_svid.token, audience)
        jwt_bundles = client.fetch_jwt_bundles()
    with X509Source(socket_path=f"unix:{socket_path}", timeout_in_seconds=10) as source:
        source_id = str(source.get_x509_context().default_svid.spiffe_id)
    with JwtSource(socket_path=f"unix:{socket_path}", timeout_in_seconds=10) as jwt_source:
        from spiffe import JwtSvid

        fetched = jwt_source.fetch_svid(audience={audience})
        bundle = jwt_source.get_bundle_for_trust_domain(fetched.spiffe_id.trust_domain)
        parsed = JwtSvid.parse_and_validate(fetched.token, bundle, {audience})
    emit(
        spiffe_id=str(svid.spiffe_id),
        all_ids=[str(item.spiffe_id) for item in svids],
        chain_length=len(svid.cert_chain),
        key_matches=svid.leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == svid.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        trust_domains=sorted(str(bundle.trust_domain) for bundle in bundles.bundles),
        jwt_spiffe_id=str(jwt_svid.spiffe_id),
        jwt_audience=sorted(jwt_svid.audience),
        validated_id=str(validated.spiffe_id),
        jwt_bundle_domains=sorted(str(bundle.trust_domain) for bundle in jwt_bundles.bundles),
        source_id=source_id,
        jwt_source_validated=str(parsed.spiffe_id),
    )


def watch(socket_path: str, count: int) -> None:
    from spiffe import WorkloadApiClient

    done = threading.Event()
    seen = 0

    def on_success(context: object) -> None:
        nonlocal seen
        svids = context.x509_svids  # type: ignore[attr-defined]
        emit(
            ids=[str(svid.spiffe_id) for svid in svids],
            serials=[svid.leaf.serial_number for svid in svids],
            not_after=[svid.leaf.not_valid_after_utc.timestamp() for svid in svids],
        )
        seen += 1
        if seen >= count:
            done.set()

    def on_error(error: Exception) -> None:
        emit(error=str(error))
        done.set()

    client = WorkloadApiClient(socket_path=f"unix:{socket_path}")
    handler = client.stream_x509_contexts(on_success, on_error, retry_connect=False)
    done.wait()
    handler.cancel()
    client.close()


def serve(socket_path: str, count: int) -> None:
    from spiffetls import ListenOptions, listen
    from spiffetls.mode import ServerTlsMode

    from spiffe import X509Source

    source = X509Source(socket_path=f"unix:{socket_path}", timeout_in_seconds=10)
    server = listen("127.0.0.1:0", source, ListenOptions(tls_mode=ServerTlsMode.MTLS))
    emit(port=server.getsockname()[1])
    for _ in range(count):
        connection, _ = server.accept()
        connection.do_handshake()
        peer = connection.get_peer_certificate()
        assert peer is not None
        uris = (
            peer.to_cryptography()
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.UniformResourceIdentifier)
        )
        message = connection.recv(1024)
        connection.sendall(b"hello " + uris[0].encode() + b", you said " + message)
        connection.shutdown()
        connection.close()
        emit(peer=uris[0], peer_serial=peer.to_cryptography().serial_number)
    source.close()


def dial(socket_path: str, port: int, expected: str) -> None:
    from spiffetls import dial as tls_dial
    from spiffetls.tlsconfig.authorize import authorize_id

    from spiffe import SpiffeId, X509Source

    source = X509Source(socket_path=f"unix:{socket_path}", timeout_in_seconds=10)
    connection = tls_dial(
        f"127.0.0.1:{port}", source, authorize_fn=authorize_id(SpiffeId(expected))
    )
    server_certificate = connection.get_peer_certificate()
    assert server_certificate is not None
    server_serial = server_certificate.to_cryptography().serial_number
    connection.sendall(b"ping")
    reply = b""
    while True:
        try:
            chunk = connection.recv(1024)
        except Exception:  # the server closes after replying
            break
        if not chunk:
            break
        reply += chunk
    emit(
        reply=reply.decode(),
        own_id=str(source.get_x509_context().default_svid.spiffe_id),
        server_serial=server_serial,
    )
    source.close()


def error(socket_path: str) -> None:
    from spiffe import WorkloadApiClient

    with WorkloadApiClient(socket_path=f"unix:{socket_path}", default_timeout=10) as client:
        try:
            client.fetch_x509_svid()
        except Exception as problem:
            emit(error=str(problem), kind=type(problem).__name__)
            return
    emit(error=None)


def main() -> None:
    groups = os.environ.get("WARDEN_TEST_GROUPS")
    if groups:
        os.setgroups([int(gid) for gid in groups.split(",")])
    command, socket_path, *rest = sys.argv[1:]
    if command == "fetch":
        fetch(socket_path, rest[0])
    elif command == "watch":
        watch(socket_path, int(rest[0]))
    elif command == "serve":
        serve(socket_path, int(rest[0]))
    elif command == "dial":
        dial(socket_path, int(rest[0]), rest[1])
    elif command == "error":
        error(socket_path)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
