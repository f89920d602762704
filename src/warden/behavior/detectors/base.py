"""The detector interface, and the query helpers detectors share.

A detector reads the run's scored events (`behavior_scored`, see
`warden.behavior.features`) and returns hits. Grouping hits into alerts, storing them and
scoring them is the same for all detectors and lives in `warden.behavior.alerts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from warden.behavior.model import Hit, Severity

if TYPE_CHECKING:
    import duckdb

    from warden.behavior.settings import Settings


@dataclass
class RunContext:
    """The workspace connection and the run's settings, which detectors read."""

    connection: duckdb.DuckDBPyConnection
    settings: Settings
    # Keys of events already covered by a hit, filled in as detectors run in order.
    flagged: set[str] = field(default_factory=set)

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        result = self.connection.execute(sql, list(parameters))
        names = [column[0] for column in result.description or ()]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


@dataclass(frozen=True)
class Description:
    """An alert's evidence lines for people, the baseline it broke, and its techniques."""

    evidence: list[str]
    baseline: dict[str, Any]
    techniques: list[str]


class Detector(Protocol):
    id: ClassVar[str]
    title: ClassVar[str]
    techniques: ClassVar[tuple[str, ...]]
    # Whether it also runs on human identities (their alerts are reported apart).
    humans: ClassVar[bool]
    # Whether it waits for the identity's learning window.
    learning: ClassVar[bool]

    def find(self, run: RunContext) -> list[Hit]: ...

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description: ...


class SqlDetector:
    """A detector whose hits are the rows of one query; subclasses set the query and facts."""

    id: ClassVar[str]
    title: ClassVar[str]
    techniques: ClassVar[tuple[str, ...]]
    humans: ClassVar[bool] = False
    learning: ClassVar[bool] = False

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        raise NotImplementedError

    def severity(self, row: dict[str, Any]) -> Severity:
        raise NotImplementedError

    def group(self, row: dict[str, Any]) -> str:
        return ""

    def find(self, run: RunContext) -> list[Hit]:
        sql, parameters = self.query(run)
        return [
            Hit(
                detector=self.id,
                ev_key=row["ev_key"],
                event_id=row["event_id"],
                event_time=row["event_time"],
                identity=row["identity"],
                credential=row["credential"],
                human=bool(row["human"]),
                severity=self.severity(row),
                group=self.group(row),
                in_batch=bool(row["in_batch"]),
                facts=row,
            )
            for row in run.rows(sql, parameters)
        ]


def distinct(values: Sequence[Any], limit: int = 8) -> list[Any]:
    """Return the distinct non-null values in order of first appearance, at most `limit`."""
    seen: list[Any] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
            if len(seen) == limit:
                break
    return seen


def listing(values: Sequence[Any], limit: int = 5) -> str:
    shown = distinct(values, limit + 1)
    text = ", ".join(str(value) for value in shown[:limit])
    return text + (", ..." if len(shown) > limit else "")


def moment(value: Any) -> str:
    """Format a time as ISO 8601 in UTC, or "unknown"."""
    if value is None:
        return "unknown"
    return str(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
