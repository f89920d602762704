"""Bundles and CA journals: the warden.pki persistence protocols."""

from __future__ import annotations

import json
import threading

import pytest

from warden.store import Datastore, InvalidInput


def append_key(key: str):  # type: ignore[no-untyped-def]
    def mutate(current: bytes | None) -> bytes:
        document = json.loads(current) if current else {"keys": [], "spiffe_sequence": 0}
        document["keys"].append(key)
        document["spiffe_sequence"] += 1
        return json.dumps(document).encode()

    return mutate


def test_update_bundle_starts_from_none(datastore: Datastore) -> None:
    assert datastore.get_bundle("example.org") is None
    seen: list[bytes | None] = []

    def mutate(current: bytes | None) -> bytes:
        seen.append(current)
        return b'{"keys":[]}'

    assert datastore.update_bundle("example.org", mutate) == b'{"keys":[]}'
    assert seen == [None]
    assert datastore.get_bundle("spiffe://example.org") == b'{"keys":[]}'


def test_failed_mutation_changes_nothing(datastore: Datastore) -> None:
    datastore.update_bundle("example.org", lambda _: b"v1")

    def broken(_current: bytes | None) -> bytes:
        raise RuntimeError("mutation failed")

    with pytest.raises(RuntimeError):
        datastore.update_bundle("example.org", broken)
    assert datastore.get_bundle("example.org") == b"v1"
    with pytest.raises(InvalidInput, match="returned str, not bytes"):
        datastore.update_bundle("example.org", lambda _: "text")  # type: ignore[arg-type,return-value]
    assert datastore.get_bundle("example.org") == b"v1"


def test_concurrent_updates_lose_nothing(datastore_url: str) -> None:
    """Two servers append their authorities to one bundle at once; every key survives."""
    servers = [Datastore.open(datastore_url, server_id=f"s{i}") for i in range(2)]
    try:
        barrier = threading.Barrier(8)

        def worker(index: int) -> None:
            barrier.wait()
            for round_number in range(5):
                servers[index % 2].update_bundle(
                    "example.org", append_key(f"k{index}-{round_number}")
                )

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        document = json.loads(servers[0].get_bundle("example.org") or b"{}")
        assert len(document["keys"]) == 40
        assert document["spiffe_sequence"] == 40
    finally:
        for store in servers:
            store.close()


def test_federated_bundles_are_listed_and_deleted(datastore: Datastore) -> None:
    datastore.set_bundle("example.org", b"own")
    datastore.set_bundle("partner.example", b"theirs")
    assert datastore.list_bundles() == {"example.org": b"own", "partner.example": b"theirs"}
    datastore.delete_bundle("partner.example")
    assert datastore.get_bundle("partner.example") is None
    with pytest.raises(InvalidInput, match="invalid trust domain"):
        datastore.get_bundle("Partner")


def test_journal_round_trip_per_server(datastore: Datastore) -> None:
    assert datastore.load_journal("server-a") is None
    datastore.save_journal("server-a", b"\x00journal-a")
    datastore.save_journal("server-b", b"journal-b")
    datastore.save_journal("server-a", b"journal-a2")
    assert datastore.load_journal("server-a") == b"journal-a2"
    assert datastore.load_journal("server-b") == b"journal-b"


def test_journal_survives_reopen(datastore_url: str) -> None:
    with Datastore.open(datastore_url) as store:
        store.save_journal("server-a", b"journal")
        store.update_bundle("example.org", lambda _: b"bundle")
    with Datastore.open(datastore_url) as store:
        assert store.load_journal("server-a") == b"journal"
        assert store.get_bundle("example.org") == b"bundle"
