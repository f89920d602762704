"""gRPC over TLS with SPIFFE peer checks, for the Warden server API.

grpc-python cannot request a client certificate without requiring one, and cannot check a
peer's SPIFFE ID (a URI SAN) instead of a host name. Node attestation needs a TLS connection
without a client certificate and every other agent call needs one, on the same port, as in
SPIRE. So Warden terminates TLS itself, with Python's `ssl` module, and relays the plaintext
HTTP/2 bytes between the TLS connection and a gRPC endpoint on a private Unix socket:

- the server accepts TLS, verifies a client certificate when one is presented, and relays to
  its gRPC server (see `warden.server.transport`);
- the client side (`ClientBridge`) listens on a private Unix socket for a local gRPC channel
  and relays each connection over TLS to the server, after checking that the server presents
  the expected SPIFFE ID.

Private sockets live in a directory created with mode 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from warden.spiffe import SpiffeId

log = logging.getLogger(__name__)

RELAY_CHUNK_BYTES = 256 * 1024
HANDSHAKE_TIMEOUT_SECONDS = 10.0


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from `reader` to `writer` until end of stream, then close `writer`."""
    try:
        while True:
            data = await reader.read(RELAY_CHUNK_BYTES)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


async def relay_both(
    first: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    second: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    before_close: Callable[[], None] | None = None,
) -> None:
    """Relay in both directions until both sides finish, then close both writers.

    `before_close` runs after relaying ends and before the sockets close.
    """
    try:
        await asyncio.gather(relay(first[0], second[1]), relay(second[0], first[1]))
    finally:
        if before_close is not None:
            before_close()
        for _, writer in (first, second):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def private_socket_dir(prefix: str) -> Path:
    """Create a fresh directory, mode 0700, for private sockets. Short, to fit `sun_path`."""
    # /tmp rather than $TMPDIR, which can be long enough to overflow sun_path (108 bytes).
    short_dir = "/tmp"  # noqa: S108 - mkdtemp makes a fresh 0700 directory inside it
    return Path(
        tempfile.mkdtemp(prefix=prefix, dir=short_dir if os.path.isdir(short_dir) else None)
    )


def peer_uri_sans(certificate_der: bytes) -> list[str]:
    """Return the URI SANs of a DER certificate (empty when it has none)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.UniformResourceIdentifier))


@dataclass(frozen=True)
class ClientCredentials:
    """A client's TLS credentials: its SVID chain and key (optional) and the CA bundle it trusts."""

    bundle_pem: bytes | None
    chain: tuple[x509.Certificate, ...] = ()
    private_key: PrivateKeyTypes | None = None


def build_client_context(credentials: ClientCredentials, key_dir: Path) -> ssl.SSLContext:
    """Build a TLS client context that verifies the server's chain against the bundle.

    The host name is not checked: the caller checks the server's SPIFFE ID after the
    handshake. Without a bundle the server is not verified at all (insecure bootstrap).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if credentials.bundle_pem:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=credentials.bundle_pem.decode())
    else:
        context.verify_mode = ssl.CERT_NONE
    if credentials.chain and credentials.private_key is not None:
        _load_key_pair(context, credentials, key_dir)
    context.set_alpn_protocols(["h2"])
    return context


def _load_key_pair(context: ssl.SSLContext, credentials: ClientCredentials, key_dir: Path) -> None:
    """Load the SVID and its key into `context`.

    `ssl` reads keys only from files. On Linux the PEM goes into an anonymous memory file
    (memfd), so the key never touches a disk; elsewhere it is written to `key_dir` (a 0700
    directory) with mode 0600 and removed once loaded.
    """
    assert credentials.private_key is not None
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in credentials.chain)
    pem += credentials.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("warden-client-svid", os.MFD_CLOEXEC)
        try:
            os.write(descriptor, pem)
            context.load_cert_chain(f"/proc/self/fd/{descriptor}")
        finally:
            os.close(descriptor)
        return
    path = key_dir / f"client-{os.urandom(8).hex()}.pem"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        context.load_cert_chain(str(path))
    finally:
        path.unlink(missing_ok=True)


class ServerIdentityError(Exception):
    """The server presented a certificate for an unexpected SPIFFE ID."""


class ClientBridge:
    """A local Unix socket that relays each gRPC connection over TLS to a Warden server.

    `credentials` is called for every new connection, so a renewed SVID or a new bundle is used
    from the next connection on. `expected_server_id` is checked against the server
    certificate's URI SAN unless the credentials carry no bundle (insecure bootstrap).
    """

    def __init__(
        self,
        host: str,
        port: int,
        credentials: Callable[[], ClientCredentials],
        expected_server_id: SpiffeId,
    ) -> None:
        self._host = host
        self._port = port
        self._credentials = credentials
        self._expected_server_id = expected_server_id
        self._directory = private_socket_dir("warden-bridge-")
        self.socket_path = self._directory / "grpc.sock"
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    @property
    def target(self) -> str:
        """The gRPC target for a channel that goes through this bridge.

        Open channels with the option `("grpc.use_local_subchannel_pool", 1)`: gRPC otherwise
        shares connections between channels to the same target, and a channel made after a
        renewal would reuse a TLS connection made with the old SVID.
        """
        return f"unix:{self.socket_path}"

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._bridge(reader, writer)
        except asyncio.CancelledError:
            # The bridge is closing; asyncio would log the cancelled connection as an error.
            writer.close()

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            credentials = self._credentials()
            context = build_client_context(credentials, self._directory)
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(self._host, self._port, ssl=context),
                    HANDSHAKE_TIMEOUT_SECONDS,
                )
            except (OSError, ssl.SSLError, TimeoutError) as error:
                self.last_error = f"cannot reach the server at {self._host}:{self._port}: {error}"
                log.debug(
                    "bridge connection failed",
                    extra={"address": f"{self._host}:{self._port}", "error": str(error)},
                )
                writer.close()
                return
            if credentials.bundle_pem:
                ssl_object = upstream[1].get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                uris = peer_uri_sans(der) if der else []
                if uris != [str(self._expected_server_id)]:
                    presented = uris or "no SPIFFE ID"
                    self.last_error = (
                        f"the server at {self._host}:{self._port} presented {presented}; "
                        f"expected {self._expected_server_id}"
                    )
                    log.error(
                        "server identity mismatch",
                        extra={"address": f"{self._host}:{self._port}", "error": self.last_error},
                    )
                    upstream[1].close()
                    writer.close()
                    return
            self.last_error = None
            await relay_both((reader, writer), upstream)
        finally:
            self._connections.discard(task)


def abstract_socket_name(tag: str) -> str:
    """Return a unique Linux abstract socket name (leading NUL) for one relayed connection."""
    return f"\0warden-{tag}-{os.urandom(16).hex()}"


async def open_unix_from(
    bound_name: str, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the Unix socket `path` from a client socket bound to `bound_name`.

    The gRPC server reports `bound_name` as the peer address, so the relay can map each
    connection to its caller.
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.bind(bound_name)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, path)
    except BaseException:
        client.close()
        raise
    return await asyncio.open_unix_connection(sock=client)
