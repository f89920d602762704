"""The entry change log, and a follower that reads it without missing late commits.

Every create, update and delete of a registration entry appends an event (id, entry id,
kind) in the same transaction. Servers load all entries once, then follow the log to keep
their cache current: for each event they re-read the entry (`get_entries`), which returns
its current state or nothing when it was deleted.

Event ids come from a sequence, and on PostgreSQL a transaction can take id 7, commit after
the transaction that took id 8, and so become visible later. A follower that only queries
`id > last` would skip 7 for ever. `EntryEventFollower` remembers such gaps and asks for
them again on each poll until they appear or `gap_timeout` passes (a gap that never fills
belongs to a transaction that rolled back). SQLite serialises writers, so ids commit in
order there, and the follower costs nothing extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select

from warden.store._base import StoreBase
from warden.store.models import EntryEvent, EntryEventKind
from warden.store.schema import entry_events

log = logging.getLogger(__name__)

#: How long a follower keeps querying a missing event id. A transaction that keeps its id
#: uncommitted longer than this is missed, so the default is generous.
DEFAULT_GAP_TIMEOUT = timedelta(minutes=5)

#: How long events are kept before `prune_entry_events` removes them. A server disconnected
#: for longer cannot catch up through the log and must reload all entries.
DEFAULT_EVENT_RETENTION = timedelta(days=1)

_ID_CHUNK = 500

#: When no event is older than the gap timeout (a young or fully pruned log), how many ids
#: below the oldest recent one a new follower checks for gaps.
INITIAL_GAP_SCAN = 1000


def insert_entry_events(
    connection: Connection, changes: Iterable[tuple[str, EntryEventKind]], now: datetime
) -> None:
    """Append one event per (entry id, kind) inside the caller's transaction."""
    rows = [
        {"entry_id": entry_id, "kind": str(kind), "created_at": now} for entry_id, kind in changes
    ]
    if rows:
        connection.execute(entry_events.insert(), rows)


def _to_event(row: object) -> EntryEvent:
    return EntryEvent(
        id=row.id,  # type: ignore[attr-defined]
        entry_id=row.entry_id,  # type: ignore[attr-defined]
        kind=EntryEventKind(row.kind),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
    )


class EntryEventStore(StoreBase):
    """Reading and pruning the entry change log."""

    def entry_events_since(self, last_id: int, limit: int = 1000) -> list[EntryEvent]:
        """Return up to `limit` events with id greater than `last_id`, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(entry_events)
                .where(entry_events.c.id > last_id)
                .order_by(entry_events.c.id)
                .limit(limit)
            )
            return [_to_event(row) for row in rows]

    def entry_events_by_ids(self, ids: Iterable[int]) -> list[EntryEvent]:
        """Return the events among `ids` that exist now, oldest first."""
        wanted = sorted(set(ids))
        events: list[EntryEvent] = []
        with self._read() as connection:
            for start in range(0, len(wanted), _ID_CHUNK):
                chunk = wanted[start : start + _ID_CHUNK]
                rows = connection.execute(select(entry_events).where(entry_events.c.id.in_(chunk)))
                events.extend(_to_event(row) for row in rows)
        return sorted(events, key=lambda event: event.id)

    def latest_entry_event_id(self) -> int:
        """Return the highest event id visible now, or 0 when the log is empty."""
        with self._read() as connection:
            return int(connection.execute(select(func.max(entry_events.c.id))).scalar() or 0)

    def entry_event_id_before(self, moment: datetime) -> int | None:
        """Return the highest id of the events created before `moment`, or None."""
        with self._read() as connection:
            value = connection.execute(
                select(func.max(entry_events.c.id)).where(entry_events.c.created_at < moment)
            ).scalar()
        return None if value is None else int(value)

    def recent_entry_event_ids(self, since: datetime) -> list[int]:
        """Return the ids of the events created at or after `since`, in order."""
        with self._read() as connection:
            return list(
                connection.execute(
                    select(entry_events.c.id)
                    .where(entry_events.c.created_at >= since)
                    .order_by(entry_events.c.id)
                ).scalars()
            )

    def prune_entry_events(self, older_than: datetime) -> int:
        """Delete events created before `older_than`; return how many were deleted."""
        with self._write() as connection:
            result = connection.execute(
                delete(entry_events).where(entry_events.c.created_at < older_than)
            )
        count = result.rowcount or 0
        if count:
            log.info("pruned entry events", extra={"count": count})
        return count


class EntryEventFollower:
    """Follows the entry change log for one cache, re-reading ids that committed late.

    Create it right before loading all entries (it records the position to start from), load
    the entries, then call `poll()` regularly. Each poll returns the new events, including
    ones that filled an earlier gap; the caller re-reads their entries. Seeing an event twice
    is harmless because the caller re-reads the current row.
    """

    def __init__(
        self,
        store: EntryEventStore,
        *,
        gap_timeout: timedelta = DEFAULT_GAP_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._store = store
        self._gap_timeout = gap_timeout
        self._clock = clock or store._now
        self._batch_size = batch_size
        now = self._clock()
        # Ids at or below the starting point that are missing now may belong to transactions
        # still open while the cache loads, so they are gaps like any other. Such ids are
        # younger than the gap timeout, so the scan starts after the last older event.
        self._last_id = store.latest_entry_event_id()
        cutoff = now - gap_timeout
        recent = [i for i in store.recent_entry_event_ids(cutoff) if i <= self._last_id]
        base = store.entry_event_id_before(cutoff)
        if base is None:
            lowest = recent[0] if recent else self._last_id + 1
            base = max(0, lowest - 1 - INITIAL_GAP_SCAN)
        self._gaps: dict[int, datetime] = {}
        self._track_gaps([*recent, self._last_id + 1], first=base + 1, now=now)

    @property
    def last_id(self) -> int:
        """The highest event id seen."""
        return self._last_id

    @property
    def gaps(self) -> frozenset[int]:
        """The event ids skipped so far that are still being watched for."""
        return frozenset(self._gaps)

    def _track_gaps(self, ids: Sequence[int], first: int, now: datetime) -> None:
        expected = first
        for event_id in ids:
            for missing in range(expected, event_id):
                self._gaps.setdefault(missing, now)
            expected = max(expected, event_id + 1)

    def poll(self) -> list[EntryEvent]:
        """Return the events that appeared since the last poll, in id order."""
        now = self._clock()
        found: list[EntryEvent] = []
        if self._gaps:
            filled = self._store.entry_events_by_ids(self._gaps)
            for event in filled:
                del self._gaps[event.id]
            found.extend(filled)
            expired = [gap for gap, seen in self._gaps.items() if now - seen > self._gap_timeout]
            for gap in expired:
                del self._gaps[gap]
            if expired:
                log.info(
                    "gave up waiting for entry events; their transactions rolled back or "
                    "committed after the gap timeout",
                    extra={"count": len(expired), "first_id": min(expired)},
                )
        while True:
            batch = self._store.entry_events_since(self._last_id, self._batch_size)
            if not batch:
                break
            self._track_gaps([event.id for event in batch], first=self._last_id + 1, now=now)
            self._last_id = batch[-1].id
            found.extend(batch)
            if len(batch) < self._batch_size:
                break
        found.sort(key=lambda event: event.id)
        return found
