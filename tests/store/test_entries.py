"""Registration entries: validation, create, update, delete, listing and bulk loading."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from warden.spiffe import Selector
from warden.store import (
    AlreadyExists,
    Datastore,
    EntryEventKind,
    EntrySpec,
    InvalidEntry,
    NotFound,
    RevisionConflict,
    SelectorMatch,
)
from warden.store.schema import audit_log, entry_events, entry_selectors, registration_entries

ACTOR = "unix:alice"


def spec(path: str = "/web", **changes: object) -> EntrySpec:
    base = EntrySpec(
        spiffe_id=f"spiffe://example.org{path}",
        parent_id="spiffe://example.org/spire/agent/join_token/abc",
        selectors=("unix:uid:1000", "unix:gid:1000"),
        owner="team-web",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def row_counts(store: Datastore) -> tuple[int, int, int, int]:
    with store.engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(select(func.count()).select_from(table)).scalar()
            for table in (registration_entries, entry_selectors, entry_events, audit_log)
        )


def test_create_entry_returns_stored_fields(datastore: Datastore) -> None:
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    entry = datastore.create_entry(
        spec(
            dns_names=["Web.Example.org", "api.example.org"],
            federates_with=["spiffe://partner.example"],
            x509_svid_ttl=600,
            jwt_svid_ttl=60,
            admin=True,
            hint="web",
            expires_at=expires,
            description="public web tier",
        ),
        actor=ACTOR,
    )
    assert len(entry.id) == 36
    assert entry.spiffe_id == "spiffe://example.org/web"
    assert entry.selectors == (Selector("unix", "uid:1000"), Selector("unix", "gid:1000"))
    assert entry.dns_names == ("web.example.org", "api.example.org")
    assert entry.federates_with == ("partner.example",)
    assert (entry.x509_svid_ttl, entry.jwt_svid_ttl) == (600, 60)
    assert entry.admin is True
    assert entry.downstream is False
    assert entry.hint == "web"
    assert entry.expires_at == expires
    assert entry.owner == "team-web"
    assert entry.description == "public web tier"
    assert entry.revision == 1
    assert entry.last_delivered_at is None
    assert datastore.get_entry(entry.id) == entry


def test_create_entry_keeps_caller_entry_id(datastore: Datastore) -> None:
    entry = datastore.create_entry(spec(), actor=ACTOR, entry_id="web-frontend")
    assert entry.id == "web-frontend"
    with pytest.raises(AlreadyExists, match="entry id web-frontend is already used"):
        datastore.create_entry(spec("/other"), actor=ACTOR, entry_id="web-frontend")


def test_missing_owner_says_how_to_add_one(datastore: Datastore) -> None:
    with pytest.raises(InvalidEntry) as raised:
        datastore.create_entry(spec(owner="  "), actor=ACTOR)
    assert str(raised.value) == (
        "entry spiffe://example.org/web: owner is required; pass -owner <person or team>"
    )
    assert row_counts(datastore) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spiffe_id": "spiffe://Example.org/web"}, "spiffe_id is invalid"),
        ({"spiffe_id": "https://example.org/web"}, "it must be 'spiffe'"),
        ({"parent_id": ""}, "parent_id is required"),
        ({"parent_id": "spiffe://example.org/web"}, "parent_id is the entry's own SPIFFE ID"),
        ({"selectors": ()}, "at least one selector is required"),
        ({"selectors": ("unix",)}, "expected 'type:value'"),
        ({"selectors": "unix:uid:0"}, "selectors must be a list"),
        ({"x509_svid_ttl": -1}, "x509_svid_ttl -1 is negative"),
        ({"jwt_svid_ttl": 2**40}, "jwt_svid_ttl 1099511627776 is larger than"),
        ({"dns_names": ["bad_name.example"]}, "invalid DNS name 'bad_name.example'"),
        ({"dns_names": ["*.com"]}, "a wildcard needs at least two labels"),
        ({"federates_with": ["Partner"]}, "invalid federates_with trust domain"),
        ({"expires_at": datetime(2031, 1, 1)}, "has no time zone"),
        ({"hint": "x" * 2000}, "hint is longer than 1024 characters"),
    ],
)
def test_invalid_entry_writes_nothing(
    datastore: Datastore, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidEntry, match=message):
        datastore.create_entry(spec(**changes), actor=ACTOR)
    assert row_counts(datastore) == (0, 0, 0, 0)


def test_similar_entry_is_rejected_whatever_selector_order(datastore: Datastore) -> None:
    first = datastore.create_entry(spec(), actor=ACTOR)
    with pytest.raises(AlreadyExists, match="similar entry already exists") as raised:
        datastore.create_entry(
            spec(selectors=("unix:gid:1000", "unix:uid:1000"), owner="someone-else"), actor=ACTOR
        )
    assert raised.value.existing_id == first.id
    assert row_counts(datastore)[0] == 1
    other_selectors = datastore.create_entry(spec(selectors=("unix:uid:1000",)), actor=ACTOR)
    assert other_selectors.id != first.id


def test_batch_with_one_bad_entry_writes_nothing(datastore: Datastore) -> None:
    specs = [spec("/a"), spec("/b", owner=""), spec("/c")]
    with pytest.raises(InvalidEntry, match=r"entry 2 of 3: entry spiffe://example\.org/b: owner"):
        datastore.create_entries(specs, actor=ACTOR)
    assert row_counts(datastore) == (0, 0, 0, 0)


def test_batch_conflicting_with_stored_entry_writes_nothing(datastore: Datastore) -> None:
    datastore.create_entry(spec("/b"), actor=ACTOR)
    before = row_counts(datastore)
    with pytest.raises(AlreadyExists):
        datastore.create_entries([spec("/a"), spec("/b")], actor=ACTOR)
    assert row_counts(datastore) == before


def test_batch_with_duplicate_entries_is_rejected(datastore: Datastore) -> None:
    with pytest.raises(InvalidEntry, match="entries 1 and 2 of the batch are the same entry"):
        datastore.create_entries([spec("/a"), spec("/a")], actor=ACTOR)


def test_create_appends_event_and_audit_record(datastore: Datastore) -> None:
    entry = datastore.create_entry(spec(), actor=ACTOR)
    events = datastore.entry_events_since(0)
    assert [(e.entry_id, e.kind) for e in events] == [(entry.id, EntryEventKind.CREATED)]
    records = list(datastore.iter_audit())
    assert len(records) == 1
    assert records[0].action == "entry.create"
    assert records[0].actor == ACTOR
    assert records[0].subject == "spiffe://example.org/web"
    assert records[0].details["entry_id"] == entry.id
    assert records[0].server_id == "server-a"


def test_update_entry_bumps_revision(datastore: Datastore, clock: object) -> None:
    entry = datastore.create_entry(spec(), actor=ACTOR)
    clock.advance(seconds=5)  # type: ignore[attr-defined]
    updated = datastore.update_entry(
        entry.id,
        replace(entry.to_spec(), selectors=("k8s:ns:web",), owner="team-platform"),
        actor="unix:bob",
    )
    assert updated.revision == 2
    assert updated.selectors == (Selector("k8s", "ns:web"),)
    assert updated.owner == "team-platform"
    assert updated.created_at == entry.created_at
    assert updated.updated_at == entry.created_at + timedelta(seconds=5)
    assert [e.kind for e in datastore.entry_events_since(0)] == [
        EntryEventKind.CREATED,
        EntryEventKind.UPDATED,
    ]
    assert [r.action for r in datastore.iter_audit()] == ["entry.create", "entry.update"]


def test_update_with_stale_revision_is_rejected(datastore: Datastore) -> None:
    entry = datastore.create_entry(spec(), actor=ACTOR)
    datastore.update_entry(entry.id, replace(entry.to_spec(), hint="a"), actor=ACTOR)
    with pytest.raises(RevisionConflict, match="is at revision 2, not 1"):
        datastore.update_entry(
            entry.id, replace(entry.to_spec(), hint="b"), actor=ACTOR, expected_revision=1
        )
    assert datastore.get_entry(entry.id).hint == "a"


def test_update_into_similar_entry_is_rejected(datastore: Datastore) -> None:
    first = datastore.create_entry(spec("/a"), actor=ACTOR)
    second = datastore.create_entry(spec("/b"), actor=ACTOR)
    with pytest.raises(AlreadyExists) as raised:
        datastore.update_entry(second.id, first.to_spec(), actor=ACTOR)
    assert raised.value.existing_id == first.id
    assert datastore.get_entry(second.id) == second


def test_update_unknown_entry_is_not_found(datastore: Datastore) -> None:
    with pytest.raises(NotFound, match="entry nope not found"):
        datastore.update_entry("nope", spec(), actor=ACTOR)


def test_delete_entry_removes_children(datastore: Datastore) -> None:
    entry = datastore.create_entry(spec(dns_names=["a.example"]), actor=ACTOR)
    deleted = datastore.delete_entry(entry.id, actor=ACTOR)
    assert deleted == entry
    with pytest.raises(NotFound):
        datastore.get_entry(entry.id)
    assert row_counts(datastore)[:2] == (0, 0)
    assert [e.kind for e in datastore.entry_events_since(0)][-1] == EntryEventKind.DELETED
    with pytest.raises(NotFound):
        datastore.delete_entry(entry.id, actor=ACTOR)


def test_get_entries_returns_only_existing(datastore: Datastore) -> None:
    a = datastore.create_entry(spec("/a"), actor=ACTOR)
    b = datastore.create_entry(spec("/b"), actor=ACTOR)
    assert datastore.get_entries([a.id, b.id, "gone"]) == {a.id: a, b.id: b}


def test_list_entries_by_selector_match(datastore: Datastore) -> None:
    both = datastore.create_entry(spec("/both", selectors=("a:1", "b:2")), actor=ACTOR)
    only_a = datastore.create_entry(spec("/a", selectors=("a:1",)), actor=ACTOR)
    more = datastore.create_entry(spec("/more", selectors=("a:1", "b:2", "c:3")), actor=ACTOR)
    other = datastore.create_entry(spec("/other", selectors=("d:4",)), actor=ACTOR)

    def ids(match: SelectorMatch) -> set[str]:
        found = datastore.list_entries(selectors=["a:1", "b:2"], match=match)
        return {entry.spiffe_id.rsplit("/", 1)[1] for entry in found}

    assert ids(SelectorMatch.EXACT) == {"both"}
    assert ids(SelectorMatch.SUPERSET) == {"both", "more"}
    assert ids(SelectorMatch.SUBSET) == {"both", "a"}
    assert ids(SelectorMatch.ANY) == {"both", "a", "more"}
    assert other.id not in {e.id for e in datastore.list_entries(selectors=["a:1"])}
    assert {e.id for e in datastore.list_entries(parent_id=both.parent_id)} == {
        both.id,
        only_a.id,
        more.id,
        other.id,
    }


def test_list_entries_pages_in_id_order(datastore: Datastore) -> None:
    created = datastore.create_entries([spec(f"/w{i}") for i in range(7)], actor=ACTOR)
    pages, after = [], None
    while True:
        page = datastore.list_entries(limit=3, after_id=after)
        if not page:
            break
        pages.append(page)
        after = page[-1].id
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [e.id for page in pages for e in page] == sorted(e.id for e in created)


def test_list_entries_by_owner_and_federation(datastore: Datastore) -> None:
    datastore.create_entry(
        spec("/a", owner="team-a", federates_with=["partner.example"]), actor=ACTOR
    )
    datastore.create_entry(spec("/b", owner="team-b"), actor=ACTOR)
    assert [e.owner for e in datastore.list_entries(owner="team-b")] == ["team-b"]
    assert [e.spiffe_id for e in datastore.list_entries(federates_with="partner.example")] == [
        "spiffe://example.org/a"
    ]


def test_iter_all_entries_merges_children(datastore: Datastore) -> None:
    specs = [
        spec(
            f"/svc{i}",
            selectors=tuple(f"k8s:pod-label:n{i}-{j}" for j in range(i % 3 + 1)),
            dns_names=[f"s{i}.example"] if i % 2 else [],
            federates_with=["partner.example"] if i % 4 == 0 else [],
        )
        for i in range(25)
    ]
    created = datastore.create_entries(specs, actor=ACTOR)
    loaded = list(datastore.iter_all_entries(batch_size=4))
    assert loaded == sorted(created, key=lambda e: e.id)
    assert datastore.count_entries() == 25


def test_iter_all_entries_stopped_early(datastore: Datastore) -> None:
    datastore.create_entries([spec(f"/svc{i}") for i in range(30)], actor=ACTOR)
    stream = datastore.iter_all_entries(batch_size=4)
    first = [next(stream) for _ in range(5)]
    stream.close()
    assert len({entry.id for entry in first}) == 5
    assert datastore.count_entries() == 30
    assert len(list(datastore.iter_all_entries(batch_size=7))) == 30


def test_iter_all_entries_with_no_entries(datastore: Datastore) -> None:
    assert list(datastore.iter_all_entries()) == []


def test_record_deliveries_keeps_latest(datastore: Datastore) -> None:
    entry = datastore.create_entry(spec(), actor=ACTOR)
    t1 = datetime(2030, 1, 1, 10, tzinfo=UTC)
    t2 = t1 + timedelta(minutes=5)
    assert datastore.record_deliveries([(entry.id, t1), (entry.id, t2), ("gone", t2)]) == 2
    assert datastore.get_entry(entry.id).last_delivered_at == t2
    datastore.record_deliveries([(entry.id, t1)])
    assert datastore.get_entry(entry.id).last_delivered_at == t2
    assert datastore.get_entry(entry.id).revision == 1
    assert len(datastore.entry_events_since(0)) == 1


def test_entries_survive_reopen(datastore_url: str) -> None:
    with Datastore.open(datastore_url) as store:
        entry = store.create_entry(spec(), actor=ACTOR)
    with Datastore.open(datastore_url) as store:
        assert store.get_entry(entry.id) == entry
