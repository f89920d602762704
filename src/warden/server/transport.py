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
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

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


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection, as established by the listener."""

    kind: str  # "tls" or "local"
    address: str
    spiffe_id: SpiffeId | None = None
    certificate_der: bytes | None = None
    uid: int | None = None
    pid: int | None = None
    host: str = ""

    def describe(self) -> str:
        """The actor recorded in the audit log for calls from this peer."""
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
        """The peer of a gRPC call, or None when the call did not come through a listener."""
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

    async def start_tls(self, host: str, port: int) -> int:
        """Listen for TLS on `host:port` (port 0 picks a free one) and return the port.

        Each accepted connection gets the TLS context current at that moment, so a rotated
        server SVID or a changed bundle applies from the next connection on.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
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
            task = asyncio.create_task(self._handle_tls(connection, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start_admin_socket(self, path: Path) -> None:
        """Listen on the admin Unix socket, in a directory of mode 0700."""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if path.exists() or path.is_symlink():
            path.unlink()
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
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection,
                ssl=self._tls_context(),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            log.info("TLS handshake failed", extra={"address": address, "error": str(error)})
            connection.close()
            return
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
        peer = Peer("tls", address, spiffe_id, certificate, host=str(peername[0]))
        await self._relay(peer, reader, writer)

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
