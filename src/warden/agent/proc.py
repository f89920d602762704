"""Reading process facts from a procfs tree (Linux `/proc`, or a recorded copy in tests).

Every reader takes the proc root, so that attestors can be pointed at recorded
`/proc/<pid>/cgroup` files of containers and pods.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROC_ROOT = Path("/proc")

# The lines of /proc/<pid>/status the agent reads: real and effective ids, then groups.
_STATUS_UID_RE = re.compile(r"^Uid:\s+(\d+)\s+(\d+)", re.MULTILINE)
_STATUS_GID_RE = re.compile(r"^Gid:\s+(\d+)\s+(\d+)", re.MULTILINE)
_STATUS_GROUPS_RE = re.compile(r"^Groups:([ \t\d]*)$", re.MULTILINE)


class ProcessGoneError(LookupError):
    """The process no longer exists, or its procfs entry cannot be read."""


@dataclass(frozen=True, slots=True)
class ProcessCredentials:
    """Real and effective user and group ids and supplementary groups from `status`."""

    real_uid: int
    effective_uid: int
    real_gid: int
    effective_gid: int
    supplementary_gids: tuple[int, ...]


class ProcFS:
    """Read-only view of one procfs tree."""

    def __init__(self, root: Path | str = DEFAULT_PROC_ROOT) -> None:
        self.root = Path(root)
        self._prefix = f"{self.root}/"

    def path(self, pid: int, *parts: str) -> Path:
        return self.root.joinpath(str(pid), *parts)

    def _read_text(self, pid: int, name: str) -> str:
        # os.open and one read, not pathlib: every Workload API call reads these files, and
        # procfs files of this kind fit in one page.
        path = f"{self._prefix}{pid}/{name}"
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = []
                while chunk := os.read(descriptor, 65536):
                    chunks.append(chunk)
            finally:
                os.close(descriptor)
        except FileNotFoundError:
            raise ProcessGoneError(f"process {pid} not found under {self.root}") from None
        except ProcessLookupError:
            raise ProcessGoneError(f"process {pid} exited while {name} was read") from None
        except OSError as error:
            raise ProcessGoneError(f"cannot read {path}: {error.strerror or error}") from None
        return b"".join(chunks).decode(errors="replace")

    def start_time(self, pid: int) -> int:
        """Return the process start time in clock ticks after boot (field 22 of `stat`).

        The value identifies a process across PID reuse: a new process with the same PID has a
        later start time.
        """
        text = self._read_text(pid, "stat")
        # The command name (field 2) is in parentheses and may itself contain spaces and
        # parentheses, so split after the last closing parenthesis.
        close = text.rfind(")")
        if close < 0:
            raise ProcessGoneError(f"unexpected format of {self.path(pid, 'stat')}: no ')'")
        fields = text[close + 2 :].split()
        # fields[0] is field 3 (state), so field 22 is fields[19].
        if len(fields) < 20:
            raise ProcessGoneError(
                f"unexpected format of {self.path(pid, 'stat')}: {len(fields) + 2} fields"
            )
        return int(fields[19])

    def credentials(self, pid: int) -> ProcessCredentials:
        """Return the ids of the `Uid`, `Gid` and `Groups` lines of `status`."""
        text = self._read_text(pid, "status")
        uids = _STATUS_UID_RE.search(text)
        gids = _STATUS_GID_RE.search(text)
        groups = _STATUS_GROUPS_RE.search(text)
        if uids is None or gids is None:
            raise ProcessGoneError(f"unexpected format of {self.path(pid, 'status')}")
        supplementary = tuple(int(part) for part in groups.group(1).split()) if groups else ()
        return ProcessCredentials(
            int(uids.group(1)),
            int(uids.group(2)),
            int(gids.group(1)),
            int(gids.group(2)),
            supplementary,
        )

    def cgroup(self, pid: int) -> str:
        """Return the text of `/proc/<pid>/cgroup`."""
        return self._read_text(pid, "cgroup")

    def executable_path(self, pid: int) -> str:
        """Return the target of `/proc/<pid>/exe`, the path of the running binary."""
        try:
            return os.readlink(self.path(pid, "exe"))
        except FileNotFoundError:
            raise ProcessGoneError(f"process {pid} not found under {self.root}") from None
        except OSError as error:
            raise ProcessGoneError(
                f"cannot read {self.path(pid, 'exe')}: {error.strerror or error}; "
                "reading another user's executable needs root or the same user"
            ) from None

    def open_executable(self, pid: int) -> int:
        """Open the running binary of `pid` read-only and return the file descriptor.

        The descriptor keeps referring to the binary that was running when it was opened, even
        if the process executes another program later.
        """
        try:
            return os.open(self.path(pid, "exe"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ProcessGoneError(f"process {pid} not found under {self.root}") from None
        except OSError as error:
            raise ProcessGoneError(
                f"cannot open {self.path(pid, 'exe')}: {error.strerror or error}; "
                "reading another user's executable needs root or the same user"
            ) from None
