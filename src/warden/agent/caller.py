"""The process at the other end of a Workload API connection.

The kernel records the connecting process's pid, effective uid and effective gid when it
calls `connect()`, and `SO_PEERCRED` returns them: nothing the caller sends can change them.
A pid alone is not an identity, because the process may exit and its pid be reused, or it may
execute another program while keeping the connection open. So when the agent accepts a
connection it also records the process's start time and, when an attestor needs the binary,
opens the running executable. After each attestation `verify_unchanged()` checks that the
process is still the one that connected and still runs the same binary.

NOTE: a process can connect and execute another program before the agent accepts the
connection; the snapshot then shows the new program. Accepting promptly narrows that window
but cannot close it, as with every agent that identifies callers by pid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field

from warden.agent.proc import ProcessGoneError, ProcFS

_UCRED = struct.Struct("iII")


class CallerChangedError(Exception):
    """The process behind a connection is no longer the one that connected."""


@dataclass(frozen=True, slots=True)
class Executable:
    """The binary a caller was running when it connected, kept open by descriptor."""

    path: str
    descriptor: int
    device: int
    inode: int


@dataclass(slots=True)
class Caller:
    """Peer credentials and the process snapshot taken when a connection was accepted."""

    pid: int
    uid: int
    gid: int
    start_time: int
    proc: ProcFS
    executable: Executable | None = None
    closed: bool = field(default=False, repr=False)

    def verify_unchanged(self) -> None:
        """Raise `CallerChangedError` unless `pid` is still the process that connected.

        Checks the start time (PID reuse), the effective uid and gid (a set-id program), and
        when an executable was recorded, the running binary (`execve` of another program).
        """
        try:
            start_time = self.proc.start_time(self.pid)
            credentials = self.proc.credentials(self.pid)
        except ProcessGoneError as error:
            raise CallerChangedError(f"caller pid {self.pid} has exited: {error}") from None
        if start_time != self.start_time:
            raise CallerChangedError(
                f"pid {self.pid} now belongs to another process (start time {start_time}, "
                f"expected {self.start_time})"
            )
        if credentials.effective_uid != self.uid or credentials.effective_gid != self.gid:
            raise CallerChangedError(
                f"caller pid {self.pid} changed its credentials since it connected "
                f"(uid {self.uid} -> {credentials.effective_uid}, "
                f"gid {self.gid} -> {credentials.effective_gid})"
            )
        if self.executable is not None:
            try:
                status = os.stat(self.proc.path(self.pid, "exe"))
            except OSError as error:
                raise CallerChangedError(
                    f"cannot check the binary of caller pid {self.pid}: {error.strerror}"
                ) from None
            if (status.st_dev, status.st_ino) != (
                self.executable.device,
                self.executable.inode,
            ):
                raise CallerChangedError(
                    f"caller pid {self.pid} executed another program since it connected "
                    f"(it connected running {self.executable.path})"
                )

    def close(self) -> None:
        """Release the executable's descriptor. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        if self.executable is not None:
            with contextlib.suppress(OSError):
                os.close(self.executable.descriptor)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return `(pid, uid, gid)` of the peer of a connected Unix socket (`SO_PEERCRED`)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def capture_caller(pid: int, uid: int, gid: int, proc: ProcFS, *, open_executable: bool) -> Caller:
    """Snapshot the process `pid` that has just connected with credentials `uid`/`gid`.

    Raises `ProcessGoneError` when the process cannot be read: a pid of 0 means the peer is
    in a PID namespace the agent cannot see.
    """
    if pid <= 0:
        raise ProcessGoneError(
            "the peer's pid is not visible from the agent's PID namespace; run the agent in "
            "the host PID namespace (hostPID in Kubernetes)"
        )
    start_time = proc.start_time(pid)
    executable = None
    if open_executable:
        descriptor = proc.open_executable(pid)
        try:
            path = proc.executable_path(pid)
            status = os.fstat(descriptor)
            # The path was read after the descriptor was opened: make sure both describe the
            # same binary, in case the process executed another one in between.
            current = os.stat(proc.path(pid, "exe"))
            if (current.st_dev, current.st_ino) != (status.st_dev, status.st_ino):
                raise ProcessGoneError(f"process {pid} executed another program while connecting")
        except BaseException:
            os.close(descriptor)
            raise
        executable = Executable(path, descriptor, status.st_dev, status.st_ino)
    return Caller(pid, uid, gid, start_time, proc, executable)
