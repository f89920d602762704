"""Join tokens: single use, expiry, hashed storage, and exactly-once use under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from warden.store import Datastore, InvalidInput, TokenInvalid, TokenProblem
from warden.store.schema import join_tokens
from warden.store.tokens import token_hash


def test_token_is_consumed_once(datastore: Datastore) -> None:
    token, record = datastore.create_join_token(owner="alice", actor="unix:alice")
    assert record.prefix == token[:8]
    assert record.expires_at == record.created_at + timedelta(seconds=600)
    used = datastore.consume_join_token(token, used_by="spiffe://example.org/spire/agent/x")
    assert used.owner == "alice"
    assert used.used_by == "spiffe://example.org/spire/agent/x"
    with pytest.raises(TokenInvalid, match="was already used at") as raised:
        datastore.consume_join_token(token)
    assert raised.value.reason is TokenProblem.USED


def test_expired_token_is_rejected(datastore: Datastore, clock: object) -> None:
    token, _ = datastore.create_join_token(owner="alice", actor="a", ttl=timedelta(seconds=30))
    clock.advance(seconds=30)  # type: ignore[attr-defined]
    with pytest.raises(TokenInvalid, match="expired at 2030-01-01T12:00:30") as raised:
        datastore.consume_join_token(token)
    assert raised.value.reason is TokenProblem.EXPIRED
    assert "warden token generate" in str(raised.value)


def test_unknown_token_is_rejected(datastore: Datastore) -> None:
    with pytest.raises(TokenInvalid, match="join token 00000000… is unknown") as raised:
        datastore.consume_join_token("00000000-0000-4000-8000-000000000000")
    assert raised.value.reason is TokenProblem.UNKNOWN


def test_token_value_is_not_stored(datastore: Datastore) -> None:
    token, _ = datastore.create_join_token(owner="alice", actor="a")
    with datastore.engine.connect() as connection:
        row = connection.execute(select(join_tokens)).one()
    assert row.token_hash == token_hash(token)
    assert token not in [str(value) for value in row]
    assert [r.details["token_prefix"] for r in datastore.iter_audit()] == [token[:8]]


def test_token_needs_owner(datastore: Datastore) -> None:
    with pytest.raises(InvalidInput, match="owner is required; pass -owner"):
        datastore.create_join_token(owner=" ", actor="a")
    assert datastore.list_join_tokens(include_used=True) == []


def test_token_alias_is_validated(datastore: Datastore) -> None:
    with pytest.raises(InvalidInput, match="invalid alias SPIFFE ID"):
        datastore.create_join_token(owner="a", actor="a", alias_spiffe_id="spiffe://A/b")
    _, record = datastore.create_join_token(
        owner="a", actor="a", alias_spiffe_id="spiffe://example.org/node/db"
    )
    assert record.alias_spiffe_id == "spiffe://example.org/node/db"


def test_list_and_prune_tokens(datastore: Datastore, clock: object) -> None:
    used, _ = datastore.create_join_token(owner="a", actor="a", ttl=timedelta(seconds=10))
    datastore.create_join_token(owner="b", actor="a", ttl=timedelta(hours=1))
    datastore.consume_join_token(used)
    assert [t.owner for t in datastore.list_join_tokens()] == ["b"]
    assert len(datastore.list_join_tokens(include_used=True)) == 2
    later = clock.advance(minutes=5)  # type: ignore[attr-defined]
    assert datastore.prune_join_tokens(later) == 1
    assert [t.owner for t in datastore.list_join_tokens(include_used=True)] == ["b"]


def test_tokens_survive_reopen(datastore_url: str) -> None:
    with Datastore.open(datastore_url) as store:
        token, _ = store.create_join_token(owner="alice", actor="a")
    with Datastore.open(datastore_url) as store:
        assert store.consume_join_token(token).owner == "alice"


def race_for_token(servers: list[Datastore], token: str, threads: int = 6) -> list[str]:
    """Present `token` from `threads` threads at once, spread over the servers."""
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def consume(store: Datastore) -> None:
        barrier.wait()
        try:
            store.consume_join_token(token)
            outcomes.append("ok")
        except TokenInvalid as error:
            outcomes.append(str(error.reason))

    workers = [
        threading.Thread(target=consume, args=(servers[i % len(servers)],)) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def test_concurrent_consumers_succeed_exactly_once(datastore_url: str) -> None:
    """Two servers (two datastores on one database) and several threads race for one token."""
    servers = [Datastore.open(datastore_url, server_id=f"server-{i}") for i in range(2)]
    try:
        for _round in range(5):
            token, _ = servers[0].create_join_token(owner="alice", actor="a")
            assert sorted(race_for_token(servers, token)) == ["ok"] + ["used"] * 5
    finally:
        for store in servers:
            store.close()
