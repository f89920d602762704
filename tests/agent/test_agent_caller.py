"""Reading /proc and the caller snapshot that guards against PID reuse and exec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warden.agent.caller import CallerChangedError, capture_caller
from warden.agent.proc import ProcessGoneError, ProcFS

STAT_TEMPLATE = (
    "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1195 0 0 0 3 1 0 0 20 0 1 0 {start} "
    "12345678 900 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
)
STATUS_TEMPLATE = "Name:\tworkload\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\nGroups:\t4 27\n"


def fake_process(root: Path, pid: int, start: int, uid: int = 1000, comm: str = "web") -> None:
    directory = root / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stat").write_text(STAT_TEMPLATE.format(pid=pid, comm=comm, start=start))
    (directory / "status").write_text(STATUS_TEMPLATE.format(uid=uid, gid=uid))


def test_start_time_with_parentheses_in_name(tmp_path: Path) -> None:
    fake_process(tmp_path, 77, start=123456, comm="evil) S 1 2 3 (x")

    assert ProcFS(tmp_path).start_time(77) == 123456


def test_credentials_from_status(tmp_path: Path) -> None:
    fake_process(tmp_path, 77, start=1, uid=1000)

    credentials = ProcFS(tmp_path).credentials(77)

    assert credentials.effective_uid == 1000
    assert credentials.effective_gid == 1000
    assert credentials.supplementary_gids == (4, 27)


def test_missing_process_raises(tmp_path: Path) -> None:
    with pytest.raises(ProcessGoneError, match="process 99 not found"):
        ProcFS(tmp_path).start_time(99)


def test_pid_reuse_detected(tmp_path: Path) -> None:
    proc = ProcFS(tmp_path)
    fake_process(tmp_path, 77, start=5000)
    caller = capture_caller(77, 1000, 1000, proc, open_executable=False)
    caller.verify_unchanged()

    # The caller exits and a new process gets the same pid.
    fake_process(tmp_path, 77, start=9000)

    with pytest.raises(CallerChangedError, match="now belongs to another process"):
        caller.verify_unchanged()


def test_exited_caller_detected(tmp_path: Path) -> None:
    proc = ProcFS(tmp_path)
    fake_process(tmp_path, 77, start=5000)
    caller = capture_caller(77, 1000, 1000, proc, open_executable=False)

    shutil.rmtree(tmp_path / "77")

    with pytest.raises(CallerChangedError, match="has exited"):
        caller.verify_unchanged()


def test_changed_uid_detected(tmp_path: Path) -> None:
    proc = ProcFS(tmp_path)
    fake_process(tmp_path, 77, start=5000, uid=1000)
    caller = capture_caller(77, 1000, 1000, proc, open_executable=False)

    fake_process(tmp_path, 77, start=5000, uid=0)  # it ran a set-user-id program

    with pytest.raises(CallerChangedError, match="changed its credentials"):
        caller.verify_unchanged()


def test_invisible_pid_rejected(tmp_path: Path) -> None:
    with pytest.raises(ProcessGoneError, match="PID namespace"):
        capture_caller(0, 1000, 1000, ProcFS(tmp_path), open_executable=False)


def test_exec_of_another_binary_detected() -> None:
    # The child runs Python, then replaces itself with /bin/sleep: same pid, same start time.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline(); "
            "os.execv('/bin/sleep', ['sleep', '30'])",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        caller = capture_caller(
            child.pid, os.geteuid(), os.getegid(), ProcFS(), open_executable=True
        )
        caller.verify_unchanged()
        assert caller.executable is not None
        assert caller.executable.path == os.path.realpath(sys.executable)

        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{child.pid}/exe") == caller.executable.path:
            assert time.monotonic() < deadline, "the child did not exec"
            time.sleep(0.01)

        with pytest.raises(CallerChangedError, match="executed another program"):
            caller.verify_unchanged()
        # The descriptor still reads the binary that connected, not the new one.
        head = os.pread(caller.executable.descriptor, 4, 0)
        assert head == b"\x7fELF"
        assert (
            os.fstat(caller.executable.descriptor).st_ino == os.stat(caller.executable.path).st_ino
        )
        caller.close()
    finally:
        child.kill()
        child.wait()
