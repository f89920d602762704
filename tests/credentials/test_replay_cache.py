"""The group-committed `jti` replay cache on a real datastore."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warden.credentials.replay import BatchedReplayCache
from warden.store import Datastore
from warden.store.leases import replay_key


@pytest.fixture
def datastore(tmp_path: Path) -> Iterator[Datastore]:
    store = Datastore.for_data_dir(tmp_path)
    try:
        yield store
    finally:
        store.close()


def test_concurrent_distinct_jtis_accepted(datastore: Datastore) -> None:
    batches: list[int] = []

    def remember_many(items: Sequence[tuple[str, datetime]]) -> list[bool]:
        batches.append(len(items))
        return datastore.remember_jtis(items)

    cache = BatchedReplayCache(remember_many, window=0.01)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda n: cache.remember("example.org", f"jti-{n}", expires), range(64))
        )
    cache.close()

    assert results == [True] * 64
    assert sum(batches) == 64
    assert len(batches) < 64


def test_duplicate_jti_accepted_once(datastore: Datastore) -> None:
    cache = BatchedReplayCache(datastore.remember_jtis, window=0.01)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.remember("example.org", "same", expires), range(8)))
    later = cache.remember("example.org", "same", expires)
    cache.close()

    assert results.count(True) == 1
    assert later is False


def test_same_jti_other_trust_domain_accepted(datastore: Datastore) -> None:
    cache = BatchedReplayCache(datastore.remember_jtis, window=0)
    expires = datetime.now(UTC) + timedelta(minutes=5)

    first = cache.remember("example.org", "shared", expires)
    second = cache.remember("other.org", "shared", expires)
    cache.close()

    assert first is True
    assert second is True


def test_expired_jti_row_taken_over(datastore: Datastore) -> None:
    key = replay_key("example.org", "old")
    datastore.remember_jti(key, datetime.now(UTC) - timedelta(seconds=1))

    assert datastore.remember_jti(key, datetime.now(UTC) + timedelta(minutes=5)) is True
    assert datastore.prune_jti() == 0


def test_write_failure_fails_every_caller() -> None:
    def broken(items: Sequence[tuple[str, datetime]]) -> list[bool]:
        raise OSError("disk full")

    cache = BatchedReplayCache(broken, window=0.01)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    errors: list[BaseException] = []

    def call(number: int) -> None:
        try:
            cache.remember("example.org", f"j{number}", expires)
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    cache.close()

    assert len(errors) == 5
    assert all("disk full" in str(error) for error in errors)
