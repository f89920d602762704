"""The audit log: hash chain, append-only triggers, tamper detection, restricted roles."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from warden.store import AuditEvent, Datastore, InvalidInput
from warden.store.audit import ZERO_HASH, canonical_record, chain_hash
from warden.store.roles import server_role_grants

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def fill(store: Datastore, count: int = 5) -> list[int]:
    return store.append_audit(
        [
            AuditEvent(
                action="svid.x509.sign",
                actor="spiffe://example.org/spire/agent/a",
                subject=f"spiffe://example.org/w{i}",
                details={"serial": f"{i:02x}", "ttl": 3600},
                time=T0 + timedelta(seconds=i),
            )
            for i in range(count)
        ]
    )


def tamper(store: Datastore, statement: str, **params: object) -> None:
    """Run `statement` as the database owner with the append-only triggers bypassed."""
    with store.engine.connect() as connection:
        if store.is_postgres:
            # A superuser can skip triggers; the restricted role of production cannot.
            connection.execute(text("SET session_replication_role = replica"))
            connection.execute(text(statement), params)
            connection.commit()
            return
        connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        connection.execute(text(statement), params)
        connection.commit()


def test_chain_links_records(datastore: Datastore) -> None:
    assert fill(datastore, 3) == [1, 2, 3]
    records = list(datastore.iter_audit())
    assert records[0].prev_hash == ZERO_HASH
    for previous, record in itertools.pairwise(records):
        assert record.prev_hash == previous.record_hash
    first = records[0]
    expected = chain_hash(
        ZERO_HASH,
        canonical_record(
            1, first.time, first.actor, first.action, first.subject, first.details, "server-a"
        ),
    )
    assert first.record_hash == expected
    assert datastore.audit_head() == (3, records[-1].record_hash)
    result = datastore.verify_audit_log()
    assert result.ok
    assert result.length == 3


def test_empty_log_verifies(datastore: Datastore) -> None:
    result = datastore.verify_audit_log()
    assert (result.ok, result.length, result.head_seq) == (True, 0, 0)


def test_update_and_delete_are_rejected(datastore: Datastore) -> None:
    fill(datastore, 2)
    for statement in (
        "UPDATE audit_log SET actor = 'someone' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 0",
    ):
        with datastore.engine.connect() as connection, pytest.raises(DBAPIError):
            connection.execute(text(statement))
    assert datastore.verify_audit_log().ok


@pytest.mark.parametrize(
    ("statement", "bad_seq", "message"),
    [
        (
            'UPDATE audit_log SET details = \'{"serial": "ff", "ttl": 3600}\' WHERE seq = 3',
            3,
            "record 3 was changed: its content does not match its hash",
        ),
        ("UPDATE audit_log SET recorded_at = recorded_at WHERE seq = 2 AND 1 = 0", None, None),
        ("DELETE FROM audit_log WHERE seq = 2", 2, "record 2 is missing"),
        ("DELETE FROM audit_log WHERE seq >= 4", 4, "records 4 to 5 were removed from the end"),
        (
            "UPDATE audit_log SET seq = seq + 100 WHERE seq = 2",
            2,
            "record 2 is missing",
        ),
        ("UPDATE audit_log SET record_hash = prev_hash WHERE seq = 1", 1, "record 1 was changed"),
        ("UPDATE audit_log SET details = 'not json' WHERE seq = 5", 5, "not valid JSON"),
    ],
)
def test_verify_names_first_broken_record(
    datastore: Datastore, statement: str, bad_seq: int | None, message: str | None
) -> None:
    fill(datastore, 5)
    tamper(datastore, statement)
    result = datastore.verify_audit_log()
    if bad_seq is None:
        assert result.ok
        return
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert message in (result.problem or "")


def test_verify_detects_recomputed_hash(datastore: Datastore) -> None:
    """A forger who rewrites a record and its own hash still breaks the next link."""
    fill(datastore, 4)
    record = next(r for r in datastore.iter_audit() if r.seq == 2)
    details: dict[str, Any] = dict(record.details) | {"serial": "forged"}
    forged = chain_hash(
        record.prev_hash,
        canonical_record(
            2, record.time, record.actor, record.action, record.subject, details, "server-a"
        ),
    )
    tamper(
        datastore,
        "UPDATE audit_log SET details = :details, record_hash = :forged WHERE seq = 2",
        details='{"serial": "forged", "ttl": 3600}',
        forged=forged,
    )
    result = datastore.verify_audit_log()
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "record 3 does not chain to it" in (result.problem or "")


def test_swapped_records_are_detected(datastore: Datastore) -> None:
    fill(datastore, 3)
    tamper(datastore, "UPDATE audit_log SET seq = 100 WHERE seq = 1")
    tamper(datastore, "UPDATE audit_log SET seq = 1 WHERE seq = 2")
    tamper(datastore, "UPDATE audit_log SET seq = 2 WHERE seq = 100")
    result = datastore.verify_audit_log()
    assert not result.ok
    assert result.first_bad_seq == 1


def test_secret_detail_is_rejected(datastore: Datastore) -> None:
    with pytest.raises(InvalidInput, match="details key 'token' would store a secret"):
        datastore.append_audit([AuditEvent(action="token.use", actor="a", details={"token": "x"})])
    with pytest.raises(InvalidInput, match="invalid audit action"):
        datastore.append_audit([AuditEvent(action="Entry Create", actor="a")])
    assert datastore.audit_head()[0] == 0


def test_iter_audit_filters(datastore: Datastore) -> None:
    fill(datastore, 4)
    datastore.append_audit([AuditEvent(action="svid.jwt.sign", actor="b", time=T0)])
    assert len(list(datastore.iter_audit(action="svid.x509.sign"))) == 4
    assert len(list(datastore.iter_audit(action="svid.*"))) == 5
    assert [r.seq for r in datastore.iter_audit(since=T0 + timedelta(seconds=2))] == [3, 4]
    assert [r.seq for r in datastore.iter_audit(until=T0 + timedelta(seconds=1))] == [1, 5]
    assert [r.seq for r in datastore.iter_audit(actor="b")] == [5]
    assert [r.seq for r in datastore.iter_audit(after_seq=3, limit=1)] == [4]


def test_two_servers_extend_one_chain(datastore_url: str) -> None:
    import threading

    servers = [Datastore.open(datastore_url, server_id=f"s{i}") for i in range(2)]
    try:

        def worker(store: Datastore) -> None:
            for _ in range(10):
                store.append_audit(
                    [AuditEvent(action="svid.x509.sign", actor="a") for _ in range(5)]
                )

        threads = [threading.Thread(target=worker, args=(s,)) for s in servers * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = servers[0].verify_audit_log()
        assert result.ok, result.problem
        assert result.length == 200
    finally:
        for store in servers:
            store.close()


@pytest.mark.postgres
def test_restricted_role_cannot_change_audit_log(postgres_cluster: Any, postgres_url: str) -> None:
    """The role the docs recommend for the server works, but cannot touch audit records even
    with the triggers out of the way."""
    Datastore.open(postgres_url).close()
    database = postgres_url.rsplit("/", 1)[1]
    role = f"server_{database[-8:]}"
    postgres_cluster.create_role(role)
    with postgres_cluster.connect(database) as admin:
        for statement in server_role_grants(role):
            admin.execute(statement)  # type: ignore[arg-type]
        # Even if the owner disabled the triggers, privileges still stop the server role.
        admin.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")

    restricted_url = postgres_cluster.url(database, user=role)
    with Datastore.open(restricted_url, migrate=False, server_id="restricted") as store:
        token, _ = store.create_join_token(owner="alice", actor="a")
        store.consume_join_token(token)
        fill(store, 3)
        assert store.verify_audit_log().ok
    with postgres_cluster.connect(database, user=role) as connection:
        for statement in (
            "UPDATE audit_log SET actor = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "DELETE FROM audit_head",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ):
            with pytest.raises(psycopg.errors.Error):
                connection.execute(statement)  # type: ignore[arg-type]
