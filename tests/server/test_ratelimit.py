"""Token-bucket rate limits per source address."""

from __future__ import annotations

from warden.server.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2.0, clock=clock)

    assert limiter.allow("10.0.0.1")
    assert limiter.allow("10.0.0.1")
    assert not limiter.allow("10.0.0.1")
    clock.now = 1.0
    assert limiter.allow("10.0.0.1")


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate=1.0, clock=FakeClock())

    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")


def test_retry_after_reports_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=1.0, clock=clock)
    limiter.allow("a")

    assert limiter.retry_after("a") == 0.5
