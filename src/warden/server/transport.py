"""The server's listeners: TLS for agents and admins, and the local admin socket.

Both relay into the gRPC server, which listens only on a Unix socket in a private
directory. Each relayed connection comes from a client socket bound to a unique abstract
name; the gRPC handlers see that name as the peer address and look up who is calling in
`PeerRegistry`: the verified SPIFFE ID of a TLS client certificate, or the uid and pid of a
local process read from the admin socket with SO_PEERCRED. See `warden.api.transport` for why
TLS is not terminated by gRPC itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import socket
import ssl
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509

from warden.api.transport import (
    HANDSHAKE_TIMEOUT_SECONDS,
    RELAY_CHUNK_BYTES,
    abstract_socket_name,
    open_unix_from,
    peer_uri_sans,
    relay_both,
)
from warden.spiffe import SpiffeError, SpiffeId

log = logging.getLogger(__name__)

_ABSTRACT_PREFIX = "unix-abstract:"

# Bounds on connections that have not proven an identity, so that unauthenticated clients
# cannot use up the server's file descriptors. Each relayed connection uses three.
MAX_PENDING_HANDSHAKES = 256
MAX_ANONYMOUS_CONNECTIONS = 256
MAX_ANONYMOUS_PER_HOST = 16
# A connection without a client certificate is only for node attestation, which takes
# seconds; it is closed after this long.
ANONYMOUS_LIFETIME_SECONDS = 60.0
# Repeated connection-level failures are logged at most this often per reason.
FAILURE_LOG_INTERVAL_SECONDS = 10.0


class AdminSocketError(OSError):
    """The admin socket's path is unsafe or taken; the message explains why and what to do."""


def prepare_admin_socket(path: Path) -> None:
    """Make `path` ready for the admin socket, or raise AdminSocketError.

    A missing directory is created with mode 0700. An existing one must be a real directory
    owned by the server's user and not writable by others, because a user who can write it
    can replace the socket and answer the CLI in the server's place; its mode is left alone, so
    a shared socket directory keeps its other users. Only a stale socket is removed: never a
    regular file, and never the socket of a server that still answers.
    """
    directory = path.parent
    if not directory.exists() and not directory.is_symlink():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise AdminSocketError(
            f"admin socket directory {directory} is a symbolic link or not a directory; "
            "point socket_path into a real directory"
        )
    if info.st_uid != os.geteuid():
        raise AdminSocketError(
            f"admin socket directory {directory} belongs to uid {info.st_uid}, not to the "
            f"server's user (uid {os.geteuid()}); remove it or choose another socket_path"
        )
    if info.st_mode & 0o022:
        raise AdminSocketError(
            f"admin socket directory {directory} is writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}), so they could replace the socket; use a "
            "directory of mode 0700 or 0755"
        )
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise AdminSocketError(
            f"{path} exists and is not a socket; remove it or choose another socket_path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # a stale socket of a server that is gone
    else:
        raise AdminSocketError(
            f"another process serves the admin socket {path}; stop it or choose another socket_path"
        )
    finally:
        probe.close()


class _ThrottledLog:
    """Logs the first failure of each kind per interval, then how many were not logged."""

    def __init__(self, interval: float = FAILURE_LOG_INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def info(self, message: str, **fields: object) -> None:
        now = time.monotonic()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            self._suppressed[message] = self._suppressed.get(message, 0) + 1
            return
        suppressed = self._suppressed.pop(message, 0)
        self._last[message] = now
        extra = dict(fields)
        if suppressed:
            extra["suppressed"] = suppressed
        log.info(message, extra=extra)


@dataclass(frozen=True)
class Peer:
    """The caller on the other end of a connection, as the listener established it."""

    kind: str  # "tls" or "local"
    address: str
    spiffe_id: SpiffeId | None = None
    certificate_der: bytes | None = None
    uid: int | None = None
    pid: int | None = None
    host: str = ""
    # NotAfter of the client certificate, in Unix seconds. The handshake checked it once;
    # calls on a long-lived connection must check it again.
    not_after: float | None = None

    def describe(self) -> str:
        """Return the actor recorded in the audit log for calls from this peer."""
        if self.kind == "local":
            try:
                user = pwd.getpwuid(self.uid).pw_name if self.uid is not None else "unknown"
            except KeyError:
                user = "unknown"
            return f"local:uid={self.uid}({user}),pid={self.pid}"
        if self.spiffe_id is not None:
            return str(self.spiffe_id)
        return f"tls:{self.address}"


@dataclass
class PeerRegistry:
    """Maps the abstract name of each relayed connection to its `Peer`."""

    _peers: dict[str, Peer] = field(default_factory=dict)

    def add(self, name: str, peer: Peer) -> None:
        self._peers[name.lstrip("\0")] = peer

    def remove(self, name: str) -> None:
        self._peers.pop(name.lstrip("\0"), None)

    def lookup(self, context: grpc.aio.ServicerContext) -> Peer | None:
        """Return the peer of a gRPC call, or None when the call did not come through a listener."""
        address = context.peer()
        if not address.startswith(_ABSTRACT_PREFIX):
            return None
        return self._peers.get(address[len(_ABSTRACT_PREFIX) :])

    def __len__(self) -> int:
        return len(self._peers)


class Listeners:
    """The TLS listener and the admin socket, relaying into the gRPC server's private socket."""

    def __init__(
        self,
        registry: PeerRegistry,
        grpc_socket: Path,
        tls_context: Callable[[], ssl.SSLContext],
        trust_domain_check: Callable[[SpiffeId], bool],
    ) -> None:
        self._registry = registry
        self._grpc_socket = str(grpc_socket)
        self._tls_context = tls_context
        self._trust_domain_check = trust_domain_check
        self._servers: list[asyncio.base_events.Server] = []
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.tls_port: int | None = None
        self._pending_handshakes = 0
        self._anonymous_by_host: dict[str, int] = {}
        self._failures = _ThrottledLog()

    @property
    def anonymous_connections(self) -> int:
        return sum(self._anonymous_by_host.values())

    async def start_tls(self, host: str, port: int) -> int:
        """Listen for TLS on `host:port` (port 0 picks a free one) and return the port.

        Each accepted connection gets the TLS context current at that moment, so a rotated
        server SVID or a changed bundle applies from the next connection on.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on accepted connections (see below).
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError as error:
            listener.close()
            raise OSError(
                error.errno,
                f"cannot listen on {host}:{port}: {error.strerror}; "
                "choose another bind_address or bind_port",
            ) from error
        listener.listen(1024)
        listener.setblocking(False)
        self._sockets.append(listener)
        self.tls_port = listener.getsockname()[1]
        accept_task = asyncio.create_task(self._accept_tls(listener))
        self._tasks.add(accept_task)
        accept_task.add_done_callback(self._tasks.discard)
        return self.tls_port

    async def _accept_tls(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, address = await loop.sock_accept(listener)
            except OSError as error:
                log.error("accept failed on the TLS listener", extra={"error": str(error)})
                await asyncio.sleep(0.1)
                continue
            if self._pending_handshakes >= MAX_PENDING_HANDSHAKES:
                connection.close()
                self._failures.info(
                    "connection refused: too many TLS handshakes in progress",
                    address=f"{address[0]}:{address[1]}",
                )
                continue
            # Small gRPC frames must not wait for the peer's delayed ACK.
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self._handle_tls(connection, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start_admin_socket(self, path: Path) -> None:
        """Listen on the admin Unix socket (mode 0600) in a directory only this user writes."""
        prepare_admin_socket(path)
        server = await asyncio.start_unix_server(self._handle_local, path=str(path))
        os.chmod(path, 0o600)
        self._servers.append(server)

    async def close(self) -> None:
        for listener in self._sockets:
            listener.close()
        self._sockets.clear()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()

    async def _handle_tls(self, connection: socket.socket, peername: tuple[str, int]) -> None:
        address = f"{peername[0]}:{peername[1]}"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=RELAY_CHUNK_BYTES)
        protocol = asyncio.StreamReaderProtocol(reader)
        self._pending_handshakes += 1
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection,
                ssl=self._tls_context(),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            self._failures.info("TLS handshake failed", address=address, error=str(error))
            connection.close()
            return
        finally:
            self._pending_handshakes -= 1
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        ssl_object = writer.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        spiffe_id = None
        if certificate:
            uris = peer_uri_sans(certificate)
            try:
                spiffe_id = SpiffeId.parse(uris[0]) if len(uris) == 1 else None
            except SpiffeError:
                spiffe_id = None
            if spiffe_id is None or not self._trust_domain_check(spiffe_id):
                log.warning(
                    "client certificate rejected: not an X509-SVID of this trust domain",
                    extra={"address": address, "error": f"URI SANs {uris}"},
                )
                writer.close()
                return
        host = str(peername[0])
        if certificate is None:
            await self._relay_anonymous(Peer("tls", address, host=host), reader, writer)
            return
        not_after = x509.load_der_x509_certificate(certificate).not_valid_after_utc.timestamp()
        peer = Peer("tls", address, spiffe_id, certificate, host=host, not_after=not_after)
        await self._relay(peer, reader, writer)

    async def _relay_anonymous(
        self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay a connection without a client certificate, within the anonymous bounds."""
        per_host = self._anonymous_by_host.get(peer.host, 0)
        if (
            self.anonymous_connections >= MAX_ANONYMOUS_CONNECTIONS
            or per_host >= MAX_ANONYMOUS_PER_HOST
        ):
            self._failures.info(
                "connection refused: too many connections without a client certificate",
                address=peer.address,
            )
            writer.close()
            return
        self._anonymous_by_host[peer.host] = per_host + 1
        try:
            await asyncio.wait_for(self._relay(peer, reader, writer), ANONYMOUS_LIFETIME_SECONDS)
        except TimeoutError:
            self._failures.info(
                "closed a connection without a client certificate after its time limit",
                address=peer.address,
            )
        finally:
            remaining = self._anonymous_by_host[peer.host] - 1
            if remaining:
                self._anonymous_by_host[peer.host] = remaining
            else:
                del self._anonymous_by_host[peer.host]

    async def _handle_local(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._serve_local(reader, writer)
        except asyncio.CancelledError:
            # The listener is closing; asyncio would log the cancelled connection as an error.
            writer.close()

    async def _serve_local(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        sock = writer.get_extra_info("socket")
        uid = pid = None
        if sock is not None:
            credentials = sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            pid, uid, _gid = struct.unpack("3i", credentials)
        await self._relay(Peer("local", "admin-socket", uid=uid, pid=pid), reader, writer)

    async def _relay(
        self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        name = abstract_socket_name(peer.kind)
        self._registry.add(name, peer)
        try:
            upstream = await open_unix_from(name, self._grpc_socket)
        except OSError as error:
            self._registry.remove(name)
            log.error(
                "cannot reach the gRPC server socket",
                extra={"path": self._grpc_socket, "error": str(error)},
            )
            writer.close()
            return
        # Forget the peer before its socket closes and its name can be bound again.
        await relay_both(
            (reader, writer), upstream, before_close=lambda: self._registry.remove(name)
        )
