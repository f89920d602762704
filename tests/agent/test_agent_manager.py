"""The SVID cache: signing ahead of need, rotation at half-life, bounds, outages, JWTs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from agent_support import LocalCA, make_entry

from warden.agent import EntryUpdate, Manager, SigningError, UsageRecorder
from warden.agent.svid import Delivery
from warden.spiffe import Selector, TrustDomain, parse_selectors


class Clock:
    """A clock the test moves by hand, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def eventually(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def manager(ca: LocalCA, clock: Clock) -> AsyncIterator[Manager]:
    manager = Manager(ca, ca.trust_domain, clock=clock)
    manager.apply(EntryUpdate(bundle=ca.bundle))
    manager.start()
    yield manager
    await manager.stop()


def uid(value: int) -> frozenset[Selector]:
    return parse_selectors([f"unix:uid:{value}"])


async def test_svids_signed_before_any_workload_asks(manager: Manager, ca: LocalCA) -> None:
    entries = [make_entry(f"spiffe://example.org/w{i}", f"unix:uid:{i}") for i in range(5)]

    manager.apply(ca.register(*entries))

    await eventually(lambda: manager.cached_svid_count == 5)
    assert ca.x509_calls == 1  # one batch for all five


async def test_rotation_starts_at_half_life(manager: Manager, ca: LocalCA, clock: Clock) -> None:
    entry = make_entry("spiffe://example.org/web", "unix:uid:1", x509_svid_ttl=60)
    manager.apply(ca.register(entry))
    await eventually(lambda: manager.cached_svid(entry.id) is not None)
    first = manager.cached_svid(entry.id)
    assert first is not None

    clock.now = first.rotate_at - 1
    manager.wake()
    await asyncio.sleep(0.1)
    assert manager.cached_svid(entry.id) is first

    clock.now = first.rotate_at + 0.1
    manager.wake()
    await eventually(lambda: manager.cached_svid(entry.id) is not first)
    second = manager.cached_svid(entry.id)
    assert second is not None
    assert second.chain[0] != first.chain[0]
    assert 25 < first.rotate_at - first.received_at <= 31


async def test_rotation_wakes_subscribers(manager: Manager, ca: LocalCA, clock: Clock) -> None:
    entry = make_entry("spiffe://example.org/web", "unix:uid:1", x509_svid_ttl=60)
    manager.apply(ca.register(entry))
    subscription = manager.subscribe(uid(1))
    first = await manager.wait_for_svids(subscription, 5)
    assert first.complete

    clock.now = first.svids[0][1].rotate_at + 1
    manager.wake()

    assert await subscription.changed(5)
    second = manager.snapshot(subscription.entries)
    assert second.fingerprint != first.fingerprint


async def test_cache_bound_keeps_subscribed_entries(ca: LocalCA, clock: Clock) -> None:
    manager = Manager(ca, ca.trust_domain, clock=clock, max_svids=3)
    manager.apply(EntryUpdate(bundle=ca.bundle))
    manager.start()
    try:
        entries = [make_entry(f"spiffe://example.org/w{i}", f"unix:uid:{i}") for i in range(6)]
        manager.apply(ca.register(*entries))
        await eventually(lambda: manager.cached_svid_count == 3)
        await asyncio.sleep(0.1)
        assert manager.cached_svid_count == 3

        # A workload of an entry beyond the bound still gets its SVID, on demand.
        subscription = manager.subscribe(uid(5))
        snapshot = await manager.wait_for_svids(subscription, 5)

        assert snapshot.complete
        assert manager.cached_svid_count == 3
        assert manager.cached_svid(entries[5].id) is not None
    finally:
        await manager.stop()


async def test_deleted_entry_withdrawn_from_subscribers(manager: Manager, ca: LocalCA) -> None:
    web = make_entry("spiffe://example.org/web", "unix:uid:1")
    manager.apply(ca.register(web))
    subscription = manager.subscribe(uid(1))
    assert (await manager.wait_for_svids(subscription, 5)).complete

    manager.apply(EntryUpdate(deleted_ids=(web.id,)))

    assert await subscription.changed(1)
    assert subscription.entries == ()
    assert manager.snapshot(subscription.entries).svids == ()
    assert manager.cached_svid(web.id) is None


async def test_selector_change_moves_entry_between_workloads(manager: Manager, ca: LocalCA) -> None:
    web = make_entry("spiffe://example.org/web", "unix:uid:1", entry_id="web")
    manager.apply(ca.register(web))
    first = manager.subscribe(uid(1))
    second = manager.subscribe(uid(2))

    moved = make_entry("spiffe://example.org/web", "unix:uid:2", entry_id="web", revision=2)
    manager.apply(ca.register(moved))

    assert await first.changed(1)
    assert await second.changed(1)
    assert first.entries == ()
    assert second.entries == (moved,)


async def test_outage_keeps_cached_svids(manager: Manager, ca: LocalCA, clock: Clock) -> None:
    entry = make_entry("spiffe://example.org/web", "unix:uid:1", x509_svid_ttl=60)
    manager.apply(ca.register(entry))
    await eventually(lambda: manager.cached_svid(entry.id) is not None)
    cached = manager.cached_svid(entry.id)
    assert cached is not None
    ca.failing = "server unreachable"

    clock.now = cached.rotate_at + 1
    manager.wake()
    await eventually(lambda: manager.signing_error is not None)

    snapshot = manager.snapshot([entry])
    assert snapshot.svids[0][1] is cached

    clock.now = cached.not_after + 1
    assert manager.snapshot([entry]).svids == ()

    ca.failing = None
    clock.now = time.time() + 120  # past the retry delay
    manager.wake()
    await eventually(lambda: manager.cached_svid(entry.id) is not cached)
    assert manager.signing_error is None


async def test_refused_entry_is_retried_with_backoff(manager: Manager, ca: LocalCA) -> None:
    unknown = make_entry("spiffe://example.org/unknown", "unix:uid:9")
    manager.apply(EntryUpdate(upserts=(unknown,)))  # the CA does not know it

    await eventually(lambda: ca.x509_calls >= 1)
    await asyncio.sleep(0.3)

    assert ca.x509_calls == 1
    assert manager.cached_svid(unknown.id) is None


async def test_jwt_svid_cached_until_half_life(manager: Manager, ca: LocalCA, clock: Clock) -> None:
    ca.jwt_svid_ttl = timedelta(minutes=5)
    entry = make_entry("spiffe://example.org/web", "unix:uid:1")
    manager.apply(ca.register(entry))

    first = await manager.fetch_jwt_svid(entry, ["b", "a"])
    again = await manager.fetch_jwt_svid(entry, ["a", "b", "a"])
    assert again is first
    assert ca.jwt_calls == 1

    clock.now = first.issued_at + 151
    renewed = await manager.fetch_jwt_svid(entry, ["a", "b"])
    assert renewed is not first
    assert ca.jwt_calls == 2


async def test_concurrent_jwt_requests_share_one_call(manager: Manager, ca: LocalCA) -> None:
    entry = make_entry("spiffe://example.org/web", "unix:uid:1")
    manager.apply(ca.register(entry))

    tokens = await asyncio.gather(*(manager.fetch_jwt_svid(entry, ["a"]) for _ in range(20)))

    assert len({token.token for token in tokens}) == 1
    assert ca.jwt_calls == 1


async def test_jwt_outage_serves_unexpired_token(
    manager: Manager, ca: LocalCA, clock: Clock
) -> None:
    entry = make_entry("spiffe://example.org/web", "unix:uid:1")
    manager.apply(ca.register(entry))
    first = await manager.fetch_jwt_svid(entry, ["a"])
    ca.failing = "server unreachable"

    clock.now = first.issued_at + 200
    assert await manager.fetch_jwt_svid(entry, ["a"]) is first

    clock.now = first.expires_at + 1
    with pytest.raises(SigningError, match="server unreachable"):
        await manager.fetch_jwt_svid(entry, ["a"])


async def test_own_bundle_of_other_domain_rejected(manager: Manager) -> None:
    other = LocalCA(trust_domain=TrustDomain("other.org"))

    with pytest.raises(ValueError, match=r"other\.org"):
        manager.apply(EntryUpdate(bundle=other.bundle))


async def test_federated_bundles_follow_entries(manager: Manager, ca: LocalCA) -> None:
    partner = LocalCA(trust_domain=TrustDomain("partner.org"))
    web = make_entry("spiffe://example.org/web", "unix:uid:1", federates_with=["partner.org"])
    db = make_entry("spiffe://example.org/db", "unix:uid:2")
    update = ca.register(web, db)
    manager.apply(
        EntryUpdate(upserts=update.upserts, bundle=ca.bundle, federated_bundles=(partner.bundle,))
    )

    web_bundles = [bundle.trust_domain.name for bundle in manager.bundles_for([web])]
    db_bundles = [bundle.trust_domain.name for bundle in manager.bundles_for([db])]

    assert web_bundles == ["example.org", "partner.org"]
    assert db_bundles == ["example.org"]


async def test_deliveries_reported_in_batches() -> None:
    class Reporter:
        def __init__(self) -> None:
            self.batches: list[list[Delivery]] = []
            self.fail = True

        async def report_deliveries(self, deliveries: list[Delivery]) -> None:
            if self.fail:
                raise ConnectionError("server down")
            self.batches.append(list(deliveries))

    reporter = Reporter()
    recorder = UsageRecorder(reporter, interval=3600, max_batch=2)
    recorder.record(["a", "b"], 100)
    recorder.record(["a"], 150)
    recorder.record(["c"], 120)

    with pytest.raises(ConnectionError):
        await recorder.flush()
    assert recorder.pending == {"a": 150, "b": 100, "c": 120}

    reporter.fail = False
    recorder.record(["b"], 90)  # older than what is pending: ignored
    await recorder.flush()

    assert [len(batch) for batch in reporter.batches] == [2, 1]
    sent = {item.entry_id: item.delivered_at for batch in reporter.batches for item in batch}
    assert sent == {"a": 150, "b": 100, "c": 120}
    assert recorder.pending == {}
