"""Scan large trees and histories in worker processes, one per CPU.

Python runs the rules' checks one core at a time, so a tree above `PARALLEL_BYTES` is split
into batches of about `BATCH_BYTES` that worker processes scan. Each worker builds its own
`Scanner` with the parent's HMAC key, minimum confidence and rules, and loads the parent's
compiled Hyperscan databases instead of compiling them again. Results come back in
submission order, so a parallel scan reports what a serial one does.

Workers are forked on Linux when the parent runs no other thread, so that nothing of the
caller's program runs again in them; otherwise (other threads, macOS, Windows) they are
spawned, which re-imports the caller's main module and needs the usual
`if __name__ == "__main__":` guard. A pool that breaks (a worker killed, a main module that
cannot be imported again) makes the scan finish in this process, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from warden.scan import files
from warden.scan.model import Confidence, Finding, ScanStats, ScanWarning

if TYPE_CHECKING:
    from warden.scan.scanner import Scanner

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Below this many bytes a scan stays in one process: starting workers costs about as much
# as scanning 64 MB on one core.
PARALLEL_BYTES = 64 * 1024 * 1024
BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class WorkerSettings:
    """The settings from which a worker builds the parent's `Scanner`."""

    key: bytes
    min_confidence: Confidence
    max_file_size: int
    rules: tuple[str, ...] | None
    serialized: dict[str, bytes]


@dataclass
class BatchResult:
    """Findings of one batch (one list per file or blob, in order), its warnings and counts."""

    findings: list[list[Finding]] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)


def available_cpus() -> int:
    """Return the number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(jobs: int, total_bytes: int) -> int:
    """Return how many workers to start: `jobs` when positive, else one per CPU for trees
    of `PARALLEL_BYTES` or more; 1 means scanning in this process."""
    if jobs < 0:
        raise ValueError(f"invalid number of jobs {jobs}; expected 0 (automatic) or more")
    if jobs > 0:
        wanted = jobs
    elif total_bytes >= PARALLEL_BYTES:
        wanted = available_cpus()
    else:
        wanted = 1
    batches = max(1, -(-total_bytes // BATCH_BYTES))
    return max(1, min(wanted, batches))


def batches_by_size(items: Iterable[tuple[int, T]]) -> Iterator[list[T]]:
    """Group (size, item) pairs, in order, into batches of about `BATCH_BYTES`."""
    current: list[T] = []
    size = 0
    for item_size, item in items:
        current.append(item)
        size += item_size
        if size >= BATCH_BYTES:
            yield current
            current, size = [], 0
    if current:
        yield current


_WORKER: Scanner | None = None


def _start_worker(settings: WorkerSettings) -> None:
    global _WORKER
    from warden.scan.detector import Detector
    from warden.scan.engine import Engine
    from warden.scan.rules import RULES
    from warden.scan.scanner import Scanner
    from warden.scan.workspace import Keyring

    selected = [rule for rule in RULES if settings.rules is None or rule.id in settings.rules]
    detector = Detector(selected, Engine(selected, serialized=settings.serialized))
    _WORKER = Scanner(
        Keyring(settings.key),
        min_confidence=settings.min_confidence,
        max_file_size=settings.max_file_size,
        detector=detector,
    )


def _worker() -> Scanner:
    if _WORKER is None:
        raise RuntimeError("scan worker used before its initializer ran")
    return _WORKER


@contextlib.contextmanager
def _batch_counts(scanner: Scanner) -> Iterator[BatchResult]:
    """Collect the warnings and counts of one batch apart from the scanner's own."""
    result = BatchResult()
    saved = scanner.result.warnings, scanner.result.stats
    scanner.result.warnings, scanner.result.stats = result.warnings, result.stats
    try:
        yield result
    finally:
        scanner.result.warnings, scanner.result.stats = saved


def scan_file_batch(scanner: Scanner, batch: list[files.SourceFile]) -> BatchResult:
    """Scan a batch of files with `scanner`, keeping the batch's warnings and counts apart."""
    with _batch_counts(scanner) as result:
        result.findings.extend(scanner.scan_source(source) for source in batch)
    return result


def scan_blob_batch(scanner: Scanner, batch: list[tuple[bytes, str, str]]) -> BatchResult:
    """Scan a batch of (content, path, commit) with `scanner`, as `scan_file_batch` does."""
    with _batch_counts(scanner) as result:
        result.findings.extend(
            scanner.scan_bytes(content, path, commit) for content, path, commit in batch
        )
    return result


def _scan_files(batch: list[files.SourceFile]) -> BatchResult:
    return scan_file_batch(_worker(), batch)


def _scan_blobs(batch: list[tuple[bytes, str, str]]) -> BatchResult:
    return scan_blob_batch(_worker(), batch)


def _ready() -> None:
    """Do nothing; submitted once per worker to start them all at once."""


def _start_method() -> str:
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "spawn"


class Pool:
    """Worker processes that scan batches for one `Scanner`'s settings.

    All workers start in the constructor, before the caller starts threads of its own
    (the git blob reader), so that they can be forked. `local` is the caller's scanner:
    when the pool breaks, it scans the batches that the workers did not return.
    """

    def __init__(self, settings: WorkerSettings, workers: int, local: Scanner) -> None:
        self.workers = workers
        self.local = local
        self.broken: str | None = None
        method = _start_method()
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_start_worker,
            initargs=(settings,),
        )
        try:
            for started in [self._executor.submit(_ready) for _ in range(workers)]:
                started.result()
        except BrokenProcessPool as error:
            self._break(error)
        else:
            logger.debug("started %d scan workers with %s", workers, method)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def scan_files(self, batches: Iterable[list[files.SourceFile]]) -> Iterator[BatchResult]:
        """Scan batches of files; yield their results in order."""
        return self._ordered(_scan_files, partial(scan_file_batch, self.local), batches)

    def scan_blobs(self, batches: Iterable[list[tuple[bytes, str, str]]]) -> Iterator[BatchResult]:
        """Scan batches of (content, path, commit); yield their results in order."""
        return self._ordered(_scan_blobs, partial(scan_blob_batch, self.local), batches)

    def _break(self, error: BaseException) -> None:
        self.broken = f"scan workers failed ({error}); the rest of the scan ran in one process"
        logger.warning("%s", self.broken)

    def _ordered(
        self,
        remote: Callable[[list[T]], BatchResult],
        local: Callable[[list[T]], BatchResult],
        batches: Iterable[list[T]],
    ) -> Iterator[BatchResult]:
        # At most two batches per worker are in flight, so that a history scan does not
        # hold every blob of a repository in memory.
        pending: deque[tuple[list[T], Future[BatchResult] | None]] = deque()
        for batch in batches:
            future = None if self.broken else self._executor.submit(remote, batch)
            pending.append((batch, future))
            while len(pending) >= 2 * self.workers:
                yield self._result(*pending.popleft(), local)
        while pending:
            yield self._result(*pending.popleft(), local)

    def _result(
        self,
        batch: list[T],
        future: Future[BatchResult] | None,
        local: Callable[[list[T]], BatchResult],
    ) -> BatchResult:
        if future is not None and not self.broken:
            try:
                return future.result()
            except BrokenProcessPool as error:
                self._break(error)
        return local(batch)
