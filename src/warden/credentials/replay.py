"""The token exchange's replay cache, with group commit.

Each accepted token's `jti` is written to the datastore before a token is issued, so a write
per exchange would cost one commit (an fsync on SQLite) per request. `BatchedReplayCache`
has one writer thread: it waits a few milliseconds after the first `jti` arrives, writes
every `jti` queued meanwhile in one transaction, and wakes each caller with its own result.
Callers are threads (the exchange runs in a worker thread), so it uses threading, not asyncio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from warden.store.leases import replay_key

#: How long the writer waits for more `jti` values before it commits, in seconds.
DEFAULT_WINDOW = 0.002
#: Largest number of `jti` values written in one transaction.
MAX_BATCH = 256


@dataclass
class _Pending:
    key: str
    expires_at: datetime
    done: threading.Event = field(default_factory=threading.Event)
    accepted: bool = False
    error: BaseException | None = None


class BatchedReplayCache:
    """A `ReplayCache` that group-commits through `remember_many`.

    `remember_many` takes `(key, expires_at)` pairs and returns, in order, whether each key
    was new; `warden.store.Datastore.remember_jtis` is one. A failed write fails every caller
    of that batch, so no token is issued without its `jti` on record.
    """

    def __init__(
        self,
        remember_many: Callable[[Sequence[tuple[str, datetime]]], list[bool]],
        *,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        self._remember_many = remember_many
        self._window = window
        self._ready = threading.Condition()
        self._queue: list[_Pending] = []
        self._closed = False
        self._writer: threading.Thread | None = None

    def remember(self, trust_domain: str, jti: str, expires_at: datetime) -> bool:
        """Record `jti` until `expires_at`; return False if it was seen and has not expired."""
        pending = _Pending(replay_key(trust_domain, jti), expires_at)
        with self._ready:
            if self._closed:
                raise RuntimeError("the replay cache is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="jti-replay-writer", daemon=True
                )
                self._writer.start()
            self._queue.append(pending)
            self._ready.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.accepted

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            writer = self._writer
        if writer is not None:
            writer.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
            if self._window > 0:
                time.sleep(self._window)
            with self._ready:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            results = self._remember_many([(p.key, p.expires_at) for p in batch])
        except BaseException as error:  # Every waiter must wake, whatever failed.
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        for pending, accepted in zip(batch, results, strict=True):
            pending.accepted = accepted
            pending.done.set()
