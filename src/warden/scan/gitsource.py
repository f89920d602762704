"""Read every blob of a git repository's history once, with the commit that introduced it.

`git log --all --reverse --raw -m` lists, oldest first, each blob that a commit added or
modified (merges included, against each parent); the first listing of a blob id is the
commit and path that introduced it. `git cat-file --batch` then streams each distinct blob
once, however many commits and branches hold it.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_EMPTY_BLOB = "0" * 40


class GitError(Exception):
    """git failed; the message carries git's own error and the repository."""


@dataclass(frozen=True)
class BlobOrigin:
    """Where a blob first appeared: the commit, its time (Unix seconds) and the path."""

    blob: str
    commit: str
    commit_time: int
    path: str


def _run_git(repository: Path, *arguments: str) -> bytes:
    try:
        completed = subprocess.run(
            ["git", "-C", str(repository), *arguments], capture_output=True, check=False
        )
    except FileNotFoundError as error:
        raise GitError(
            "git is not installed or not on PATH; install git to scan history"
        ) from error
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {arguments[0]} failed in {repository}: {message}")
    return completed.stdout


def repository_root(path: Path) -> Path:
    """Return the top of the work tree (or the git dir of a bare repository) holding `path`."""
    start = path if path.is_dir() else path.parent
    output = _run_git(start, "rev-parse", "--show-toplevel").decode().strip()
    if output:
        return Path(output)
    return Path(_run_git(start, "rev-parse", "--absolute-git-dir").decode().strip())


def blob_origins(repository: Path) -> tuple[list[BlobOrigin], int]:
    """List each distinct blob of all refs with the oldest commit and path that added it.

    Returns the origins in history order and the number of commits read. Submodules and
    symbolic links are left out.
    """
    output = _run_git(
        repository,
        "log",
        "--all",
        "--reverse",
        "--format=%x01%H %ct",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "-m",
        "-z",
        "--diff-filter=AM",
    )
    origins: dict[str, BlobOrigin] = {}
    # `-m` lists a merge once per parent, so commits are counted by id.
    commits: set[str] = set()
    for chunk in output.split(b"\x01"):
        if not chunk:
            continue
        header, _, body = chunk.partition(b"\0")
        commit, _, time_text = header.decode().partition(" ")
        commits.add(commit)
        fields = body.lstrip(b"\n").split(b"\0")
        for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.decode(errors="replace").split()
            if len(parts) < 5 or not parts[0].startswith(":"):
                continue
            mode, blob = parts[1], parts[3]
            if mode in ("160000", "120000") or blob == _EMPTY_BLOB or blob in origins:
                continue
            # Bytes that are not UTF-8 become \xNN escapes, as `files.printable_path` does.
            path = raw_path.decode("utf-8", "backslashreplace")
            origins[blob] = BlobOrigin(blob, commit, int(time_text or 0), path)
    # --diff-filter hides commits that only delete, so count commits separately.
    total = int(_run_git(repository, "rev-list", "--all", "--count").decode().strip() or 0)
    return list(origins.values()), max(total, len(commits))


def read_blobs(
    repository: Path, blobs: list[str], max_size: int
) -> Iterator[tuple[str, bytes | None, int]]:
    """Yield (blob id, content, size) for each blob; content is None above `max_size`.

    One `git cat-file --batch` process serves all blobs; a thread feeds the ids so that
    neither side of the pipe blocks.
    """
    try:
        process = subprocess.Popen(
            ["git", "-C", str(repository), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as error:
        raise GitError(
            "git is not installed or not on PATH; install git to scan history"
        ) from error
    assert process.stdin is not None
    assert process.stdout is not None

    def feed() -> None:
        assert process.stdin is not None
        try:
            for blob in blobs:
                process.stdin.write(blob.encode() + b"\n")
            process.stdin.close()
        except BrokenPipeError:
            logger.warning("git cat-file exited before reading all blob ids")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for _ in blobs:
            header = process.stdout.readline().decode().split()
            if len(header) == 2 and header[1] == "missing":
                yield header[0], None, 0
                continue
            if len(header) != 3:
                raise GitError(f"unexpected output from git cat-file: {' '.join(header)!r}")
            blob, _, size_text = header
            size = int(size_text)
            if size > max_size:
                remaining = size + 1
                while remaining:
                    chunk = process.stdout.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise GitError(_ended_early(repository, blob))
                    remaining -= len(chunk)
                yield blob, None, size
                continue
            content = process.stdout.read(size)
            # The newline after each object; a short read means git exited mid-object.
            if len(content) < size or process.stdout.read(1) != b"\n":
                raise GitError(_ended_early(repository, blob))
            yield blob, content, size
    finally:
        writer.join(timeout=5)
        process.stdout.close()
        process.kill()
        process.wait()


def _ended_early(repository: Path, blob: str) -> str:
    return (
        f"git cat-file exited in the middle of blob {blob[:12]} in {repository}; "
        "check the repository with 'git fsck' and scan again"
    )


def total_size(repository: Path, blobs: list[str]) -> int:
    """Return the summed size in bytes of `blobs`, read from object headers only."""
    if not blobs:
        return 0
    try:
        completed = subprocess.run(
            ["git", "-C", str(repository), "cat-file", "--batch-check=%(objectsize)"],
            input="\n".join(blobs).encode() + b"\n",
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as error:
        raise GitError(
            "git is not installed or not on PATH; install git to scan history"
        ) from error
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git cat-file --batch-check failed in {repository}: {message}")
    return sum(int(line) for line in completed.stdout.splitlines() if line.isdigit())
