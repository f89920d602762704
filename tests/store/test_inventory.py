"""The read-only registry interface that governance uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from warden.store import AuditEvent, Datastore, EntrySpec, SchemaError
from warden.store.inventory import RegistryAgent, RegistryEntry, open_registry_reader


def populate(store: Datastore) -> str:
    entry = store.create_entry(
        EntrySpec(
            spiffe_id="spiffe://example.org/billing",
            parent_id="spiffe://example.org/spire/agent/join_token/t1",
            selectors=("k8s:ns:billing", "k8s:sa:api"),
            owner="team-billing",
            description="billing API",
            dns_names=("billing.example",),
            x509_svid_ttl=900,
        ),
        actor="unix:alice",
    )
    store.record_deliveries([(entry.id, datetime(2030, 1, 1, 11, tzinfo=UTC))])
    store.record_attestation(
        "spiffe://example.org/spire/agent/join_token/t1",
        attestation_type="join_token",
        serial_number="0a",
        expires_at=datetime(2030, 1, 2, tzinfo=UTC),
        owner="alice",
        selectors=["join_token:t1"],
        actor="server",
    )
    store.append_audit([AuditEvent(action="svid.x509.sign", actor="spiffe://x/y")])
    return entry.id


def test_reader_returns_entries_agents_and_audit(datastore: Datastore, datastore_url: str) -> None:
    entry_id = populate(datastore)
    with open_registry_reader(datastore_url) as reader:
        entries = list(reader.entries())
        agents = list(reader.agents())
        records = list(reader.audit_records(action="svid.x509.sign"))
        leases = list(reader.leases())
    assert entries == [
        RegistryEntry(
            id=entry_id,
            spiffe_id="spiffe://example.org/billing",
            parent_id="spiffe://example.org/spire/agent/join_token/t1",
            selectors=("k8s:ns:billing", "k8s:sa:api"),
            owner="team-billing",
            description="billing API",
            admin=False,
            downstream=False,
            dns_names=("billing.example",),
            created_at=entries[0].created_at,
            updated_at=entries[0].updated_at,
            expires_at=None,
            last_delivered_at=datetime(2030, 1, 1, 11, tzinfo=UTC),
            x509_svid_ttl=900,
            jwt_svid_ttl=0,
        )
    ]
    assert entries[0].created_at.tzinfo is not None
    assert agents == [
        RegistryAgent(
            spiffe_id="spiffe://example.org/spire/agent/join_token/t1",
            attestation_type="join_token",
            owner="alice",
            serial="0a",
            svid_expires_at=datetime(2030, 1, 2, tzinfo=UTC),
            created_at=agents[0].created_at,
            last_seen_at=agents[0].last_seen_at,
            banned=False,
            selectors=("join_token:t1",),
        )
    ]
    assert [r.action for r in records] == ["svid.x509.sign"]
    assert leases == []


def test_reader_does_not_write(datastore: Datastore, datastore_url: str) -> None:
    populate(datastore)
    with open_registry_reader(datastore_url) as reader:
        store = reader._store
        with pytest.raises(Exception, match=r"(?i)read.only|readonly"):
            store.create_join_token(owner="x", actor="x")


def test_reader_rejects_non_warden_database(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.sqlite3"
    sqlite3.connect(path).close()
    with pytest.raises(SchemaError, match="is not a Warden datastore"):
        open_registry_reader(path)
