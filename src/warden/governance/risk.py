"""A risk score per identity, 0 to 100, from its active findings, with the reasons."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from warden.governance.model import Finding, Severity

# Points per finding by severity. The score is their sum, capped at 100, so one critical
# finding already puts an identity at "high" and two at "critical".
WEIGHTS = {
    Severity.CRITICAL: 45,
    Severity.HIGH: 25,
    Severity.MEDIUM: 10,
    Severity.LOW: 3,
    Severity.INFO: 0,
}
LEVELS = ((80, "critical"), (45, "high"), (20, "medium"), (1, "low"), (0, "none"))


@dataclass(frozen=True)
class Risk:
    score: int
    level: str
    reasons: tuple[str, ...]


def score(findings: Iterable[Finding]) -> Risk:
    ranked = sorted(findings, key=lambda f: (-f.severity, f.check))
    total = min(100, sum(WEIGHTS[f.severity] for f in ranked))
    level = next(name for threshold, name in LEVELS if total >= threshold)
    reasons = tuple(f"{f.check} ({f.severity}): {f.title}" for f in ranked)
    return Risk(total, level, reasons)
