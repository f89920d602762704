"""Matching workloads to entries: every selector of an entry must be among the workload's."""

from __future__ import annotations

from agent_support import make_entry

from warden.agent import EntrySet
from warden.spiffe import Selector, parse_selectors


def selectors(*texts: str) -> frozenset[Selector]:
    return parse_selectors(texts)


def test_entry_matches_when_all_selectors_present() -> None:
    entries = EntrySet()
    web = make_entry("spiffe://example.org/web", "unix:uid:1000", "unix:gid:1000")
    entries.apply([web], [])

    assert entries.match(selectors("unix:uid:1000", "unix:gid:1000", "unix:user:web")) == [web]
    assert entries.match(selectors("unix:uid:1000")) == []
    assert entries.match(selectors("unix:uid:1001", "unix:gid:1000")) == []


def test_matches_order_oldest_entry_first() -> None:
    entries = EntrySet()
    newest = make_entry("spiffe://example.org/c", "unix:uid:1", created_at=300, entry_id="a")
    oldest = make_entry("spiffe://example.org/a", "unix:uid:1", created_at=100, entry_id="z")
    tie_b = make_entry("spiffe://example.org/b2", "unix:uid:1", created_at=200, entry_id="b")
    tie_a = make_entry("spiffe://example.org/b1", "unix:uid:1", created_at=200, entry_id="a2")
    entries.apply([newest, oldest, tie_b, tie_a], [])

    matched = entries.match(selectors("unix:uid:1"))

    assert [entry.id for entry in matched] == ["z", "a2", "b", "a"]


def test_full_update_replaces_everything() -> None:
    entries = EntrySet()
    kept = make_entry("spiffe://example.org/kept", "unix:uid:1", entry_id="kept")
    dropped = make_entry("spiffe://example.org/dropped", "unix:uid:1", entry_id="dropped")
    entries.apply([kept, dropped], [])

    changes = entries.replace_all([kept])

    assert changes.removed == {"dropped"}
    assert not changes.added
    assert [entry.id for entry in entries.match(selectors("unix:uid:1"))] == ["kept"]


def test_changed_selectors_reindex_entry() -> None:
    entries = EntrySet()
    before = make_entry("spiffe://example.org/web", "unix:uid:1", entry_id="web", revision=1)
    entries.apply([before], [])
    after = make_entry("spiffe://example.org/web", "unix:uid:2", entry_id="web", revision=2)

    changes = entries.apply([after], [])

    assert changes.changed == {"web"}
    assert not changes.resign
    assert entries.match(selectors("unix:uid:1")) == []
    assert entries.match(selectors("unix:uid:2")) == [after]


def test_new_spiffe_id_needs_new_svid() -> None:
    entries = EntrySet()
    entries.apply([make_entry("spiffe://example.org/old", "unix:uid:1", entry_id="e")], [])

    changes = entries.apply(
        [make_entry("spiffe://example.org/new", "unix:uid:1", entry_id="e")], []
    )

    assert changes.resign == {"e"}


def test_delete_removes_from_index() -> None:
    entries = EntrySet()
    web = make_entry("spiffe://example.org/web", "unix:uid:1", entry_id="web")
    entries.apply([web], [])

    changes = entries.apply([], ["web", "unknown"])

    assert changes.removed == {"web"}
    assert entries.match(selectors("unix:uid:1")) == []
    assert len(entries) == 0


def test_entry_without_selectors_is_ignored() -> None:
    entries = EntrySet()
    wildcard = make_entry("spiffe://example.org/everyone", entry_id="wildcard")

    changes = entries.apply([wildcard], [])

    assert not changes
    assert entries.match(selectors("unix:uid:0")) == []
