"""Hits (one flagged event) and alerts (hits of one detector and identity, close in time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warden.governance.model import Severity

__all__ = ["Alert", "Driver", "Hit", "Severity"]


@dataclass(frozen=True)
class Hit:
    """One event a detector flags, with the facts that explain why.

    Hits of one detector, identity and `group` become one alert while they are at most the
    alert gap apart.
    """

    detector: str
    ev_key: str
    event_id: str | None
    event_time: datetime
    identity: str
    credential: str | None
    human: bool
    severity: Severity
    group: str
    in_batch: bool
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Driver:
    """One feature's share of an event's anomaly score."""

    feature: str
    value: float
    contribution: float
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": round(self.value, 2),
            "contribution": round(self.contribution, 3),
            "meaning": self.meaning,
        }


@dataclass
class Alert:
    """One detector's finding on one identity: the events, the evidence, the baseline."""

    id: str
    detector: str
    title: str
    severity: Severity
    identity: str
    credential: str | None
    human: bool
    group: str
    event_ids: list[str]
    event_times: list[datetime]
    first_event_time: datetime
    last_event_time: datetime
    techniques: list[str]
    evidence: list[str]
    baseline: dict[str, Any]
    score: float | None = None
    drivers: list[Driver] = field(default_factory=list)
    # new: raised by this run; updated: raised before, changed by this run; previous:
    # raised before and unchanged.
    status: str = "new"
    # Keys of the events in this run's work set, used to attach scores; not stored.
    ev_keys: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "title": self.title,
            "severity": str(self.severity),
            "identity": self.identity,
            "credential": self.credential,
            "human": self.human,
            "event_ids": self.event_ids,
            "event_count": len(self.event_ids),
            "first_event_time": _time(self.first_event_time),
            "last_event_time": _time(self.last_event_time),
            "techniques": self.techniques,
            "evidence": self.evidence,
            "baseline": self.baseline,
            "score": None if self.score is None else round(self.score, 3),
            "drivers": [driver.to_json() for driver in self.drivers],
            "status": self.status,
        }

    def sort_key(self) -> tuple[int, float, datetime, str]:
        return (-int(self.severity), -(self.score or 0.0), self.first_event_time, self.id)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
