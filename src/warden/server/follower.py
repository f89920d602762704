"""Follows the datastore's entry change log so that this server sees every other server's
entry changes, and applies them to the entry cache and the sync streams.

Event ids come from a sequence, and on PostgreSQL a transaction that took a lower id can
commit after one that took a higher id. A follower that only asked for `id > last` would
miss the late one, so ids skipped over are remembered as gaps and asked for again until
they appear or `GAP_TIMEOUT` passes (a rolled-back transaction leaves a gap that never
fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from warden.server.convert import cached_entry, seconds
from warden.server.entry_cache import CachedEntry, EntryCache

log = logging.getLogger(__name__)

GAP_TIMEOUT = 120.0
BATCH = 5000


class EntryFollower:
    def __init__(
        self,
        datastore: Any,
        cache: EntryCache,
        on_change: Callable[[list[CachedEntry]], None],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._datastore = datastore
        self._cache = cache
        self._on_change = on_change
        self._interval = interval
        self._clock = clock
        self.last_id = 0
        self._gaps: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.applied = 0

    def start(self, last_id: int) -> None:
        self.last_id = last_id
        self._task = asyncio.create_task(self._run(), name="entry-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Read the change log now rather than at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.poll()
                if failures:
                    log.info("entry change log readable again", extra={"attempt": failures})
                failures = 0
            except Exception as error:
                failures += 1
                if failures == 1 or failures % 50 == 0:
                    log.error(
                        "cannot read the entry change log",
                        extra={"error": str(error), "attempt": failures},
                    )

    async def poll(self) -> int:
        """Read new events (and gaps), apply them, and return how many entries changed."""
        events = await asyncio.to_thread(self._datastore.entry_events_since, self.last_id, BATCH)
        if self._gaps:
            now = self._clock()
            for gap_id, seen in list(self._gaps.items()):
                if now - seen > GAP_TIMEOUT:
                    del self._gaps[gap_id]
            if self._gaps:
                filled = await asyncio.to_thread(
                    self._datastore.entry_events_by_ids, list(self._gaps)
                )
                for event in filled:
                    self._gaps.pop(event.id, None)
                events = list(filled) + list(events)
        if not events:
            return 0
        expected = self.last_id + 1
        for event in sorted(events, key=lambda e: e.id):
            if event.id > self.last_id:
                for missing in range(expected, event.id):
                    self._gaps.setdefault(missing, self._clock())
                expected = event.id + 1
                self.last_id = event.id
        return await self.apply({event.entry_id for event in events})

    async def apply(self, entry_ids: Iterable[str]) -> int:
        """Re-read `entry_ids` and bring the cache in line with what the datastore holds."""
        ids = list(dict.fromkeys(entry_ids))
        if not ids:
            return 0
        current = await asyncio.to_thread(self._datastore.get_entries, ids)
        changed: list[CachedEntry] = []
        for entry_id in ids:
            stored = current.get(entry_id)
            cached = self._cache.get(entry_id)
            if stored is None:
                if cached is not None:
                    self._cache.delete(entry_id)
                    changed.append(cached)
                continue
            if (
                cached is not None
                and cached.revision == stored.revision
                and cached.updated_at == seconds(stored.updated_at)
            ):
                continue
            fresh = cached_entry(stored)
            previous = self._cache.upsert(fresh)
            changed.append(fresh)
            if previous is not None:
                changed.append(previous)
        if changed:
            self.applied += len(changed)
            self._on_change(changed)
        return len(changed)
