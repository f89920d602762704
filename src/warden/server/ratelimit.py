"""Token-bucket rate limits per key (a source address), as SPIRE limits attestation and
signing per caller IP address."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# SPIRE's limits: one node attestation per second per address, and 500 signed SVIDs.
ATTESTATION_PER_SECOND = 1.0
SIGNING_PER_SECOND = 500.0

# Buckets kept at once; the least recently used address is forgotten first.
MAX_TRACKED_KEYS = 65536


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows `rate` events per second per key, with bursts of up to `burst` events."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, count: float = 1.0) -> bool:
        """Take `count` tokens from `key`'s bucket; False when it does not hold that many."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens < count:
            return False
        bucket.tokens -= count
        return True

    def retry_after(self, key: str, count: float = 1.0) -> float:
        """Seconds until `count` tokens are available for `key`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        missing = count - bucket.tokens
        return max(0.0, missing / self.rate)
