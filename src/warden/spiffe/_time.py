"""Checks on the `now` that callers inject, shared by the SVID and bundle modules."""

from __future__ import annotations

from datetime import UTC, datetime


def require_aware(now: datetime, name: str = "now") -> datetime:
    """Return `now` in UTC, raising ValueError when it carries no time zone.

    A naive datetime is ambiguous (local time or UTC?) and would shift every validity check
    by the machine's UTC offset, so it is rejected rather than guessed.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(
            f"{name} {now.isoformat()} has no time zone; pass an aware datetime such as "
            "datetime.now(UTC)"
        )
    return now.astimezone(UTC)


def to_unix_seconds(moment: datetime) -> int:
    """Return `moment` as whole seconds since the epoch, rounded down."""
    return int(moment.timestamp() // 1)
