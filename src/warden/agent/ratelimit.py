"""A per-workload rate limit for the Workload API (a token bucket per workload).

A workload is identified by its attested selectors: processes that present the same
selectors get the same identities, so they share one bucket however many processes or
connections they open. The limit counts calls (a stream counts once, when it opens).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Maximum number of buckets kept. The least recently used are dropped first, which can only
#: make the limit more lenient for a workload idle long enough to be dropped.
MAX_TRACKED_WORKLOADS = 10_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Calls per second per workload, with a burst allowance; 0 turns the limit off."""

    requests_per_second: float = 0.0
    burst: int = 0

    def __post_init__(self) -> None:
        if self.requests_per_second < 0:
            raise ValueError(
                f"invalid rate limit {self.requests_per_second} requests per second: it "
                "must be 0 (off) or positive"
            )
        if self.burst < 0:
            raise ValueError(f"invalid rate limit burst {self.burst}: it must be 0 or positive")

    @property
    def enabled(self) -> bool:
        return self.requests_per_second > 0

    @property
    def capacity(self) -> float:
        """Bucket size: the burst, or one second's worth of calls when no burst is set."""
        return float(self.burst) if self.burst > 0 else max(self.requests_per_second, 1.0)


class RateLimiter:
    """Token buckets by workload key. `allow(key)` spends one token or returns False."""

    def __init__(
        self,
        limit: RateLimit,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED_WORKLOADS,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._max_tracked = max_tracked
        # key -> (tokens, time of the last refill)
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable) -> bool:
        if not self.limit.enabled:
            return True
        now = self._clock()
        capacity = self.limit.capacity
        tokens, refilled_at = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - refilled_at) * self.limit.requests_per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_tracked:
            self._buckets.popitem(last=False)
        return allowed
