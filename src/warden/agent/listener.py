"""The Workload API socket: accepts workloads, reads their peer credentials, relays to gRPC.

grpc-python gives a handler no access to the connection's socket, so it cannot read
`SO_PEERCRED`, and it cannot adopt a socket accepted elsewhere. The agent therefore accepts
connections on the public socket itself. For each one it reads the peer credentials and
snapshots the process (`Caller`). It then relays the bytes to the gRPC server on a private
socket (in a mode 0700 directory) from a client socket bound to a fresh, random abstract
name. gRPC reports that name as the call's peer (`unix-abstract:<name>`), and
`CallerRegistry` maps it back to the caller. The relay copies bytes and parses nothing.

Workloads cannot reach the private socket (directory mode 0700), and an abstract name is only
registered while its relayed connection is open, so a peer name can only come from the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any

from warden.agent.caller import Caller, capture_caller, peer_credentials
from warden.agent.proc import ProcessGoneError, ProcFS

log = logging.getLogger(__name__)

_ABSTRACT_PREFIX = "warden-workload-"


class SocketInUseError(OSError):
    """Another process is serving on the Workload API socket path."""


class UnsafeSocketDirectoryError(OSError):
    """Users other than the agent's and root could replace the Workload API socket."""


class CallerRegistry:
    """Callers by the peer address gRPC reports for their relayed connection."""

    def __init__(self) -> None:
        self._callers: dict[str, Caller] = {}

    def add(self, name: str, caller: Caller) -> None:
        self._callers[f"unix-abstract:{name}"] = caller

    def remove(self, name: str) -> Caller | None:
        return self._callers.pop(f"unix-abstract:{name}", None)

    def lookup(self, peer: str) -> Caller | None:
        """Return the caller behind the gRPC peer address `peer`, or None."""
        return self._callers.get(peer)

    def __len__(self) -> int:
        return len(self._callers)


def check_socket_directory(directory: Path) -> None:
    """Raise `UnsafeSocketDirectoryError` unless only the agent's user or root control `directory`.

    Whoever may rename entries in the socket's directory, or in any directory above it, can
    put a socket of their own in the agent's place and serve workloads a trust bundle and
    SVIDs of their choosing. So every directory on the path, and the target of every
    symbolic link on it, must belong to the agent's user or root and must not be writable
    by others, unless its sticky bit is set (as on /tmp), which keeps others from renaming
    or removing entries they do not own.
    """
    trusted = {0, os.geteuid()}
    directories = [directory.absolute(), *directory.absolute().parents]
    resolved = directory.resolve()
    directories += [resolved, *resolved.parents]
    for current in directories:
        info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            if info.st_uid not in trusted:
                raise UnsafeSocketDirectoryError(
                    f"cannot serve the Workload API in {directory}: the symbolic link {current} "
                    f"belongs to uid {info.st_uid}, who could point it elsewhere; choose a "
                    "socket_path whose directories belong to the agent's user or root"
                )
            continue
        if info.st_uid not in trusted:
            raise UnsafeSocketDirectoryError(
                f"cannot serve the Workload API in {directory}: {current} belongs to uid "
                f"{info.st_uid}, who could replace the agent's socket; choose a socket_path "
                "whose directories belong to the agent's user or root"
            )
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise UnsafeSocketDirectoryError(
                f"cannot serve the Workload API in {directory}: {current} is writable by other "
                f"users (mode {stat.S_IMODE(info.st_mode):o}), who could replace the agent's "
                "socket; remove the write permission of group and others (mode 0755)"
            )


def prepare_socket_path(path: Path) -> None:
    """Make `path` ready to bind: create its directory, remove a stale socket file.

    Refuses a directory that other users control (see `check_socket_directory`), refuses to
    remove anything that is not a socket, and refuses a socket that another process still
    serves, so that two agents never fight over one path.
    """
    # Check the part that exists before creating anything in it, then the whole path.
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    check_socket_directory(existing)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    check_socket_directory(path.parent)
    try:
        status = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise FileExistsError(
            f"cannot create the Workload API socket at {path}: a file that is not a socket "
            "is in the way; remove it or choose another socket_path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: no process listens on it
        return
    finally:
        probe.close()
    raise SocketInUseError(
        f"the Workload API socket {path} is in use by another process; stop the other agent "
        "or choose another socket_path"
    )


class PeerCredentialListener:
    """Serves `socket_path` (mode 0777) and relays each connection to `upstream_path`."""

    def __init__(
        self,
        socket_path: Path,
        upstream_path: Path,
        registry: CallerRegistry,
        proc: ProcFS,
        *,
        open_executable: bool,
    ) -> None:
        self.socket_path = socket_path
        self.upstream_path = upstream_path
        self.registry = registry
        self.proc = proc
        self.open_executable = open_executable
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_WorkloadSide] = set()

    async def start(self) -> None:
        prepare_socket_path(self.socket_path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _WorkloadSide(self), path=str(self.socket_path), backlog=1024
        )
        # Every local process may connect: what it receives is decided by attestation.
        os.chmod(self.socket_path, 0o777)  # noqa: S103 - attestation, not file modes, decides

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        for connection in list(self._connections):
            connection.abort()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    @property
    def connection_count(self) -> int:
        return len(self._connections)


class _WorkloadSide(asyncio.Protocol):
    """The workload's connection; relays to a private gRPC connection once it is open."""

    def __init__(self, listener: PeerCredentialListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.upstream: _GrpcSide | None = None
        self.caller: Caller | None = None
        self.name = _ABSTRACT_PREFIX + secrets.token_hex(16)
        self.closed = False
        self._connect_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        try:
            pid, uid, gid = peer_credentials(sock)
            self.caller = capture_caller(
                pid, uid, gid, self.listener.proc, open_executable=self.listener.open_executable
            )
        except (ProcessGoneError, OSError) as error:
            log.warning("rejected a Workload API connection", extra={"error": str(error)})
            transport.abort()
            return
        self.listener._connections.add(self)
        self.listener.registry.add(self.name, self.caller)
        self._connect_task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.bind("\0" + self.name)
            client.setblocking(False)
            await loop.sock_connect(client, str(self.listener.upstream_path))
            _, upstream = await loop.create_unix_connection(lambda: _GrpcSide(self), sock=client)
        except OSError as error:
            client.close()
            log.error(
                "cannot reach the agent's gRPC server; dropping the workload connection",
                extra={"error": str(error), "path": str(self.listener.upstream_path)},
            )
            self.abort()
            return
        if self.closed:
            if upstream.transport is not None:
                upstream.transport.abort()
            return
        self.upstream = upstream
        assert self.transport is not None
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def eof_received(self) -> bool:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        return False

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        self.listener._connections.discard(self)
        self.listener.registry.remove(self.name)
        if self.caller is not None:
            self.caller.close()


class _GrpcSide(asyncio.Protocol):
    """The relayed connection to the private gRPC server."""

    def __init__(self, workload: _WorkloadSide) -> None:
        self.workload = workload
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.workload.transport is not None:
            self.workload.transport.write(data)

    def eof_received(self) -> bool:
        if self.workload.transport is not None:
            self.workload.transport.close()
        return False

    def pause_writing(self) -> None:
        if self.workload.transport is not None:
            self.workload.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.workload.transport is not None and self.workload.upstream is not None:
            self.workload.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.workload.transport is not None:
            self.workload.transport.close()

    def __repr__(self) -> str:
        return f"<_GrpcSide {self.workload.name}>"


def describe_caller(caller: Caller) -> dict[str, Any]:
    """Log fields of a caller: pid, uid and gid (never anything the caller sent)."""
    return {"caller": {"pid": caller.pid, "uid": caller.uid, "gid": caller.gid}}
