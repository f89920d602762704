"""The agent's cache manager: entries, bundles and SVIDs, kept fresh ahead of need.

The server connection feeds the manager entries and bundles (`apply`, `set_bundles`). The
Workload API requests from it the entries that match a workload and their SVIDs. In between, one
background task keeps an X509-SVID ready for every entry, within a bound:

- an SVID is requested as soon as its entry arrives, so a workload rarely waits;
- it is replaced once half of its lifetime has passed (rotation at half-life);
- the cache holds at most `max_svids` SVIDs. Entries matched by a connected workload are
  always kept; beyond the bound, the least recently delivered of the others are dropped and
  signed again when a workload needs them;
- while the server cannot sign, cached SVIDs keep being served until they expire.

Every change a workload can see (a new SVID, a bundle change, an entry added, changed or
deleted) wakes the subscriptions it concerns, and each subscriber then reads the full state
again, so streams always send complete, current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from warden.agent.bundles import TrustBundle
from warden.agent.entries import Entry, EntryChanges, EntrySet
from warden.agent.svid import (
    PendingKey,
    SignedJwtSvid,
    Signer,
    SigningError,
    X509Svid,
    X509SvidRequest,
    X509SvidResult,
    accept_chain,
    new_key_and_csr,
)
from warden.agent.usage import UsageRecorder
from warden.spiffe import Selector, TrustDomain
from warden.spiffe.bundle import Bundle

log = logging.getLogger(__name__)

#: SPIRE's default bound on cached X509-SVIDs (`x509_svid_cache_max_size`).
DEFAULT_MAX_SVIDS = 1000
#: CSRs per signer call.
DEFAULT_SIGN_BATCH = 500
DEFAULT_JWT_CACHE_SIZE = 1000
#: Maximum sleep of the maintenance task when nothing is due.
MAX_IDLE_SECONDS = 60.0
#: Retry delays after a failed signing, doubling from the first to the last.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class EntryUpdate:
    """One message of the server's entry stream.

    `full` means `upserts` is the complete set and replaces what the agent holds. `bundle`
    is the agent's own trust domain's bundle; `federated_bundles`, when not None, replaces
    the set of federated bundles.
    """

    upserts: tuple[Entry, ...] = ()
    deleted_ids: tuple[str, ...] = ()
    full: bool = False
    bundle: Bundle | None = None
    federated_bundles: tuple[Bundle, ...] | None = None


@dataclass(frozen=True, slots=True)
class X509Snapshot:
    """A workload's current state: its SVIDs (oldest entry first) and bundles."""

    entries: tuple[Entry, ...]
    svids: tuple[tuple[Entry, X509Svid], ...]
    bundle: TrustBundle | None
    federated: tuple[TrustBundle, ...]

    @property
    def complete(self) -> bool:
        """True when every matched entry has a valid SVID and the bundle is known."""
        return self.bundle is not None and len(self.svids) == len(self.entries)

    @property
    def fingerprint(self) -> tuple[object, ...]:
        """Changes whenever anything the workload would receive changes.

        It contains the objects themselves, not their id(), because Python gives a new object
        the address of one just freed: a rotated SVID could have the id of the one it replaced.
        """
        return (self.svids, self.bundle, self.federated)


@dataclass(eq=False)
class Subscription:
    """A connected workload's interest in its entries; `changed()` waits for news."""

    selectors: frozenset[Selector]
    entries: tuple[Entry, ...] = ()
    _event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def entry_ids(self) -> frozenset[str]:
        return frozenset(entry.id for entry in self.entries)

    def notify(self) -> None:
        self._event.set()

    async def changed(self, timeout: float | None = None) -> bool:
        """Wait until the workload's state may have changed; return False on timeout."""
        try:
            # asyncio.timeout rather than wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event is set, leaving a stream running.
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


@dataclass(slots=True)
class _Failure:
    attempts: int
    retry_at: float


class Manager:
    """Holds entries, bundles and SVIDs, and keeps the SVIDs fresh. See the module docs."""

    def __init__(
        self,
        signer: Signer,
        trust_domain: TrustDomain,
        *,
        usage: UsageRecorder | None = None,
        clock: Callable[[], float] = time.time,
        max_svids: int = DEFAULT_MAX_SVIDS,
        sign_batch: int = DEFAULT_SIGN_BATCH,
        jwt_cache_size: int = DEFAULT_JWT_CACHE_SIZE,
    ) -> None:
        if max_svids < 1:
            raise ValueError(f"invalid max_svids {max_svids}: it must be at least 1")
        self.signer = signer
        self.trust_domain = trust_domain
        self.usage = usage
        self.clock = clock
        self.max_svids = max_svids
        self.sign_batch = sign_batch
        self.jwt_cache_size = jwt_cache_size

        self.entries = EntrySet()
        self._bundle: TrustBundle | None = None
        self._federated: dict[TrustDomain, TrustBundle] = {}
        self._svids: dict[str, X509Svid] = {}
        self._last_used: dict[str, float] = {}
        self._failures: dict[str, _Failure] = {}
        self._stale: set[str] = set()
        self._subscriptions: set[Subscription] = set()
        self._pins: Counter[str] = Counter()
        self._jwt_cache: OrderedDict[tuple[str, int, tuple[str, ...]], SignedJwtSvid] = (
            OrderedDict()
        )
        self._jwt_inflight: dict[tuple[str, int, tuple[str, ...]], asyncio.Task[SignedJwtSvid]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.signing_error: str | None = None

    # Lifecycle.

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._maintain(), name="warden-svid-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._jwt_inflight.values()):
            task.cancel()

    # Updates from the server.

    def apply(self, update: EntryUpdate) -> EntryChanges:
        """Apply one message of the entry stream and wake the workloads it concerns."""
        if update.full:
            changes = self.entries.replace_all(update.upserts)
        else:
            changes = self.entries.apply(update.upserts, update.deleted_ids)
        for entry_id in changes.removed:
            self._forget(entry_id)
        for entry_id in changes.resign:
            entry = self.entries.get(entry_id)
            svid = self._svids.get(entry_id)
            self._failures.pop(entry_id, None)
            if svid is not None and entry is not None and svid.spiffe_id != entry.spiffe_id:
                # The cached SVID names an identity the entry no longer grants: stop
                # serving it now rather than at rotation.
                del self._svids[entry_id]
            else:
                # A new lifetime or new DNS names: keep serving the SVID until replaced.
                self._stale.add(entry_id)
        bundles_changed = self._set_bundles(update.bundle, update.federated_bundles)
        if changes:
            log.debug(
                "entries updated",
                extra={
                    "entry_id": sorted(changes.touched)[:20],
                    "selectors": f"{len(self.entries)} entries held",
                },
            )
        self._refresh_subscriptions(changes, everyone=bundles_changed)
        self._wake.set()
        return changes

    def set_bundles(self, bundle: Bundle | None, federated: Iterable[Bundle] | None = None) -> None:
        """Replace the own trust domain's bundle and, when given, the federated bundles."""
        if self._set_bundles(bundle, None if federated is None else tuple(federated)):
            self._refresh_subscriptions(EntryChanges(), everyone=True)

    def _set_bundles(self, bundle: Bundle | None, federated: tuple[Bundle, ...] | None) -> bool:
        changed = False
        if bundle is not None:
            if bundle.trust_domain != self.trust_domain:
                raise ValueError(
                    f"bundle of {bundle.trust_domain} given as the agent's own bundle; the "
                    f"agent's trust domain is {self.trust_domain}"
                )
            if self._bundle is None or self._bundle.bundle != bundle:
                self._bundle = TrustBundle.of(bundle)
                changed = True
        if federated is not None:
            incoming = {item.trust_domain: item for item in federated}
            if incoming.keys() != self._federated.keys() or any(
                self._federated[domain].bundle != item for domain, item in incoming.items()
            ):
                self._federated = {
                    domain: (
                        self._federated[domain]
                        if domain in self._federated and self._federated[domain].bundle == item
                        else TrustBundle.of(item)
                    )
                    for domain, item in incoming.items()
                }
                changed = True
        return changed

    def _forget(self, entry_id: str) -> None:
        self._svids.pop(entry_id, None)
        self._last_used.pop(entry_id, None)
        self._failures.pop(entry_id, None)
        self._stale.discard(entry_id)
        for key in [key for key in self._jwt_cache if key[0] == entry_id]:
            del self._jwt_cache[key]

    # Workload side.

    @property
    def bundle(self) -> TrustBundle | None:
        return self._bundle

    def match(self, selectors: frozenset[Selector]) -> list[Entry]:
        return self.entries.match(selectors)

    def subscribe(self, selectors: frozenset[Selector]) -> Subscription:
        """Register a workload's interest; its entries are kept in the cache meanwhile."""
        subscription = Subscription(selectors, tuple(self.entries.match(selectors)))
        self._subscriptions.add(subscription)
        self._pin(subscription.entries, 1)
        if any(entry.id not in self._svids for entry in subscription.entries):
            self._wake.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            self._pin(subscription.entries, -1)

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    def _pin(self, entries: Iterable[Entry], delta: int) -> None:
        for entry in entries:
            self._pins[entry.id] += delta
            if self._pins[entry.id] <= 0:
                del self._pins[entry.id]

    def _refresh_subscriptions(self, changes: EntryChanges, *, everyone: bool) -> None:
        for subscription in self._subscriptions:
            matched = tuple(self.entries.match(subscription.selectors))
            if matched != subscription.entries:
                self._pin(subscription.entries, -1)
                self._pin(matched, 1)
                subscription.entries = matched
                subscription.notify()
            elif everyone or (subscription.entry_ids & changes.touched):
                subscription.notify()

    def snapshot(self, entries: Sequence[Entry]) -> X509Snapshot:
        """Return the valid SVIDs of `entries` and the bundles they need, as of now."""
        now = self.clock()
        svids = []
        federated: dict[TrustDomain, TrustBundle] = {}
        for entry in entries:
            svid = self._svids.get(entry.id)
            if svid is not None and not svid.expired_at(now) and svid.spiffe_id == entry.spiffe_id:
                svids.append((entry, svid))
            for domain in entry.federates_with:
                bundle = self._federated.get(domain)
                if bundle is not None:
                    federated[domain] = bundle
        return X509Snapshot(
            tuple(entries),
            tuple(svids),
            self._bundle,
            tuple(federated[domain] for domain in sorted(federated)),
        )

    async def wait_for_svids(self, subscription: Subscription, timeout: float) -> X509Snapshot:
        """Return the subscription's snapshot once complete, or as it is after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.snapshot(subscription.entries)
            remaining = deadline - time.monotonic()
            if snapshot.complete or not snapshot.entries or remaining <= 0:
                return snapshot
            await subscription.changed(remaining)

    def bundles_for(self, entries: Iterable[Entry]) -> list[TrustBundle]:
        """Return the own bundle and the federated bundles that `entries` federate with."""
        bundles = [] if self._bundle is None else [self._bundle]
        domains = sorted({domain for entry in entries for domain in entry.federates_with})
        bundles.extend(self._federated[domain] for domain in domains if domain in self._federated)
        return bundles

    def record_delivery(self, entry_ids: Iterable[str]) -> None:
        """Note that a workload received the SVIDs of `entry_ids` just now."""
        now = self.clock()
        ids = list(entry_ids)
        for entry_id in ids:
            self._last_used[entry_id] = now
        if self.usage is not None:
            self.usage.record(ids, now)

    async def fetch_jwt_svid(self, entry: Entry, audience: Sequence[str]) -> SignedJwtSvid:
        """Return a JWT-SVID of `entry` for `audience`, signing one when none is fresh.

        Concurrent requests for the same token share one signer call. If the signer fails,
        a cached token that has not expired yet is returned instead.
        """
        key = (entry.id, entry.revision, tuple(sorted(set(audience))))
        now = self.clock()
        cached = self._jwt_cache.get(key)
        if cached is not None and cached.fresh_at(now):
            self._jwt_cache.move_to_end(key)
            return cached

        task = self._jwt_inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._sign_jwt(entry, key[2]))
            self._jwt_inflight[key] = task
            task.add_done_callback(lambda _: self._jwt_inflight.pop(key, None))
        try:
            svid = await asyncio.shield(task)
        except SigningError:
            if cached is not None and now < cached.expires_at:
                log.warning(
                    "serving a cached JWT-SVID because the server did not sign a new one",
                    extra={"entry_id": entry.id, "spiffe_id": str(entry.spiffe_id)},
                )
                return cached
            raise
        self._jwt_cache[key] = svid
        self._jwt_cache.move_to_end(key)
        while len(self._jwt_cache) > self.jwt_cache_size:
            self._jwt_cache.popitem(last=False)
        return svid

    async def _sign_jwt(self, entry: Entry, audience: tuple[str, ...]) -> SignedJwtSvid:
        try:
            svid = await self.signer.sign_jwt_svid(entry.id, audience)
        except SigningError:
            raise
        except Exception as error:
            raise SigningError(
                f"the server did not sign a JWT-SVID for {entry.spiffe_id}: {error}"
            ) from error
        if svid.spiffe_id != entry.spiffe_id:
            raise SigningError(
                f"entry {entry.id}: the server signed a JWT-SVID for {svid.spiffe_id}, "
                f"expected {entry.spiffe_id}"
            )
        return svid

    # Maintenance.

    def wake(self) -> None:
        """Make the maintenance task look for due work now (after a clock jump, in tests)."""
        self._wake.set()

    @property
    def cached_svid_count(self) -> int:
        return len(self._svids)

    def cached_svid(self, entry_id: str) -> X509Svid | None:
        return self._svids.get(entry_id)

    async def _maintain(self) -> None:
        log.info("SVID cache started", extra={"trust_domain": str(self.trust_domain)})
        while True:
            self._wake.clear()
            due = self._due_entries(self.clock())
            if due:
                try:
                    await self._sign(due)
                except Exception as error:
                    # Whatever went wrong, the task must live on: it rotates every SVID.
                    attempts, delay = self._fail(entry.id for entry in due)
                    log.error(
                        "signing X509-SVIDs failed unexpectedly; retrying",
                        extra={"error": repr(error), "attempt": attempts, "delay_seconds": delay},
                    )
                continue
            delay = min(max(self._next_due(self.clock()) - self.clock(), 0.0), MAX_IDLE_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _due_entries(self, now: float) -> list[Entry]:
        """Entries to sign now: pinned ones first, then rotations, then new ones while room."""
        pinned: list[Entry] = []
        rotations: list[Entry] = []
        new: list[Entry] = []
        for entry in self.entries.all():
            failure = self._failures.get(entry.id)
            if failure is not None and failure.retry_at > now:
                continue
            svid = self._svids.get(entry.id)
            if svid is None:
                (pinned if entry.id in self._pins else new).append(entry)
            elif now >= svid.rotate_at or entry.id in self._stale:
                (pinned if entry.id in self._pins else rotations).append(entry)
        room = max(
            self.max_svids - len(self._svids) - sum(1 for e in pinned if e.id not in self._svids), 0
        )
        return pinned + rotations + new[:room]

    def _next_due(self, now: float) -> float:
        moments = [svid.rotate_at for svid in self._svids.values()]
        moments.extend(failure.retry_at for failure in self._failures.values())
        return min(moments, default=now + MAX_IDLE_SECONDS)

    async def _sign(self, entries: list[Entry]) -> None:
        for start in range(0, len(entries), self.sign_batch):
            await self._sign_batch(entries[start : start + self.sign_batch])

    async def _sign_batch(self, batch: list[Entry]) -> None:
        pending = await asyncio.to_thread(
            lambda: {entry.id: (entry, new_key_and_csr(entry.spiffe_id)) for entry in batch}
        )
        requests = [X509SvidRequest(entry_id, key.csr) for entry_id, (_, key) in pending.items()]
        try:
            results = await self.signer.sign_x509_svids(requests)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.signing_error = str(error)
            retry = self._fail(pending.keys())
            log.warning(
                "the server did not sign X509-SVIDs; serving cached SVIDs meanwhile",
                extra={"error": str(error), "attempt": retry[0], "delay_seconds": retry[1]},
            )
            return
        self.signing_error = None

        accepted = await asyncio.to_thread(self._accept_results, pending, results, self.clock())
        stored: set[str] = set()
        for entry_id, outcome in accepted.items():
            entry = self.entries.get(entry_id)
            requested = pending[entry_id][0]
            if entry is None or entry.spiffe_id != requested.spiffe_id:
                continue  # deleted or changed while the request was in flight
            if isinstance(outcome, str):
                attempts, delay = self._fail([entry_id])
                log.warning(
                    "the server rejected an X509-SVID request",
                    extra={
                        "entry_id": entry_id,
                        "spiffe_id": str(entry.spiffe_id),
                        "error": outcome,
                        "attempt": attempts,
                        "delay_seconds": delay,
                    },
                )
                continue
            self._svids[entry_id] = outcome
            self._failures.pop(entry_id, None)
            self._stale.discard(entry_id)
            self._last_used.setdefault(entry_id, self.clock())
            stored.add(entry_id)
        self._evict()
        if stored:
            log.debug("X509-SVIDs signed", extra={"entry_id": sorted(stored)[:20]})
            for subscription in self._subscriptions:
                if subscription.entry_ids & stored:
                    subscription.notify()

    def _accept_results(
        self,
        pending: dict[str, tuple[Entry, PendingKey]],
        results: Sequence[X509SvidResult],
        received_at: float,
    ) -> dict[str, X509Svid | str]:
        """Check each signed chain; return the SVID or an error message per entry id."""
        outcomes: dict[str, X509Svid | str] = {}
        for result in results:
            if result.entry_id not in pending:
                continue
            entry, key = pending[result.entry_id]
            if result.error:
                outcomes[result.entry_id] = result.error
                continue
            try:
                outcomes[result.entry_id] = accept_chain(
                    entry.id, entry.spiffe_id, entry.revision, key, result.chain, received_at
                )
            except SigningError as problem:
                outcomes[result.entry_id] = str(problem)
            except Exception as problem:
                # cryptography parses lazily and raises more than ValueError, such as
                # DuplicateExtension or UnsupportedAlgorithm. One such certificate must fail
                # its entry only, not end the task that rotates every SVID of the node.
                outcomes[result.entry_id] = (
                    f"entry {entry.id}: the server returned a certificate the agent cannot "
                    f"read: {problem!r}"
                )
        for entry_id in pending.keys() - outcomes.keys():
            outcomes[entry_id] = "the server's answer did not include this entry"
        return outcomes

    def _fail(self, entry_ids: Iterable[str]) -> tuple[int, float]:
        now = self.clock()
        attempts, delay = 1, RETRY_FIRST_SECONDS
        for entry_id in entry_ids:
            previous = self._failures.get(entry_id)
            attempts = 1 if previous is None else previous.attempts + 1
            delay = min(RETRY_FIRST_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS)
            self._failures[entry_id] = _Failure(attempts, now + delay)
        return attempts, delay

    def _evict(self) -> None:
        excess = len(self._svids) - self.max_svids
        if excess <= 0:
            return
        candidates = sorted(
            (entry_id for entry_id in self._svids if entry_id not in self._pins),
            key=lambda entry_id: self._last_used.get(entry_id, 0.0),
        )
        for entry_id in candidates[:excess]:
            del self._svids[entry_id]
        if excess > len(candidates):
            log.warning(
                "more entries are in use than the SVID cache can contain; raise max_svids",
                extra={"selectors": f"{len(self._svids)} cached, maximum {self.max_svids}"},
            )
