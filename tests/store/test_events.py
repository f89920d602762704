"""The entry change log and its follower, including late commits on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, insert

from warden.store import Datastore, EntryEventFollower, EntryEventKind, EntrySpec
from warden.store.columns import UtcDateTime  # noqa: F401  (type used by the table)
from warden.store.schema import entry_events

ACTOR = "unix:alice"


def spec(path: str) -> EntrySpec:
    return EntrySpec(
        spiffe_id=f"spiffe://example.org{path}",
        parent_id="spiffe://example.org/agent",
        selectors=("unix:uid:1000",),
        owner="team",
    )


def test_follower_sees_changes_after_start(datastore: Datastore) -> None:
    before = datastore.create_entry(spec("/before"), actor=ACTOR)
    follower = EntryEventFollower(datastore)
    assert follower.poll() == []
    created = datastore.create_entry(spec("/after"), actor=ACTOR)
    datastore.delete_entry(before.id, actor=ACTOR)
    events = follower.poll()
    assert [(e.entry_id, e.kind) for e in events] == [
        (created.id, EntryEventKind.CREATED),
        (before.id, EntryEventKind.DELETED),
    ]
    assert datastore.get_entries([e.entry_id for e in events]) == {created.id: created}
    assert follower.poll() == []


def test_follower_reads_in_batches(datastore: Datastore) -> None:
    follower = EntryEventFollower(datastore, batch_size=3)
    datastore.create_entries([spec(f"/w{i}") for i in range(10)], actor=ACTOR)
    assert len(follower.poll()) == 10
    assert follower.last_id == datastore.latest_entry_event_id()


def test_prune_removes_old_events(datastore: Datastore, clock: Any) -> None:
    datastore.create_entry(spec("/old"), actor=ACTOR)
    clock.advance(days=2)
    datastore.create_entry(spec("/new"), actor=ACTOR)
    assert datastore.prune_entry_events(clock.now - timedelta(days=1)) == 1
    assert [e.id for e in datastore.entry_events_since(0)] == [2]
    # Ids keep growing after the newest event is pruned too.
    assert datastore.prune_entry_events(clock.now + timedelta(seconds=1)) == 1
    datastore.create_entry(spec("/newer"), actor=ACTOR)
    assert [e.id for e in datastore.entry_events_since(0)] == [3]


def test_follower_fills_gap_and_gives_up_after_timeout(datastore: Datastore, clock: Any) -> None:
    """A gap left by an id that never commits is watched, then dropped after the timeout."""
    follower = EntryEventFollower(datastore, gap_timeout=timedelta(seconds=30), clock=clock)
    with datastore.engine.begin() as connection:
        connection.execute(
            insert(entry_events),
            [{"id": 5, "entry_id": "e5", "kind": "created", "created_at": clock.now}],
        )
    assert [e.id for e in follower.poll()] == [5]
    assert follower.gaps == frozenset({1, 2, 3, 4})
    with datastore.engine.begin() as connection:
        connection.execute(
            insert(entry_events),
            [{"id": 3, "entry_id": "e3", "kind": "updated", "created_at": clock.now}],
        )
    assert [e.id for e in follower.poll()] == [3]
    assert follower.gaps == frozenset({1, 2, 4})
    clock.advance(seconds=31)
    assert follower.poll() == []
    assert follower.gaps == frozenset()


@pytest.mark.postgres
def test_late_commit_of_lower_id_is_not_missed(postgres_cluster: Any, postgres_url: str) -> None:
    """Transaction A takes an event id, B takes the next and commits first; the follower
    that already read B's event still delivers A's once A commits."""
    server_a = Datastore.open(postgres_url, server_id="a")
    server_b = Datastore.open(postgres_url, server_id="b")
    raw = create_engine(postgres_url)
    try:
        follower = EntryEventFollower(server_b)
        slow = raw.connect()
        slow_transaction = slow.begin()
        slow.execute(
            insert(entry_events),
            [{"entry_id": "slow-entry", "kind": "created", "created_at": server_a._now()}],
        )
        fast = server_a.create_entry(spec("/fast"), actor=ACTOR)

        first = follower.poll()
        assert [e.entry_id for e in first] == [fast.id]
        assert len(follower.gaps) == 1

        slow_transaction.commit()
        slow.close()
        second = follower.poll()
        assert [e.entry_id for e in second] == ["slow-entry"]
        assert second[0].id < first[0].id
        assert follower.gaps == frozenset()
    finally:
        raw.dispose()
        server_a.close()
        server_b.close()


@pytest.mark.postgres
def test_follower_started_during_open_transaction(postgres_cluster: Any, postgres_url: str) -> None:
    """An id held by a transaction still open when the cache loads is picked up later."""
    store = Datastore.open(postgres_url)
    raw = create_engine(postgres_url)
    try:
        slow = raw.connect()
        slow_transaction = slow.begin()
        slow.execute(
            insert(entry_events),
            [{"entry_id": "slow-entry", "kind": "created", "created_at": store._now()}],
        )
        store.create_entry(spec("/fast"), actor=ACTOR)
        follower = EntryEventFollower(store)
        assert follower.poll() == []
        slow_transaction.commit()
        slow.close()
        assert [e.entry_id for e in follower.poll()] == ["slow-entry"]
    finally:
        raw.dispose()
        store.close()
