"""Column types shared by the schema and the migrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Convert an aware datetime to integer microseconds since the Unix epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Convert integer microseconds since the Unix epoch to an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=micros)


def require_aware(moment: datetime, what: str) -> datetime:
    """Return `moment` in UTC, raising ValueError for a naive datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{what} {moment.isoformat()} has no time zone; pass an aware UTC datetime"
        )
    return moment.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime with microsecond precision.

    PostgreSQL stores it as `timestamptz`. SQLite has no time type, so it stores integer
    microseconds since the epoch: exact, sortable, and cheap to convert when a million entries
    load at start. Naive datetimes are rejected on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = require_aware(value, "timestamp")
        if dialect.name == "sqlite":
            return to_micros(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_micros(value)
        result: datetime = value.astimezone(UTC)
        return result
