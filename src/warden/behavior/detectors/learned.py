"""The learned detector: events the anomaly model scores high that no rule reported.

It catches combinations no rule names (a known action from a new network at an unusual
hour with a new client). It runs last, on new events of established non-human identities,
and leaves out events a rule already reported: those alerts carry the score instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from warden.behavior.detectors.base import Description, RunContext, SqlDetector, listing
from warden.behavior.model import Hit, Severity

# Scores at or above this are medium; between the threshold and this, low.
MEDIUM_SCORE = 0.8


class LearnedAnomaly(SqlDetector):
    id: ClassVar[str] = "learned-anomaly"
    title: ClassVar[str] = "Unusual combination for this identity (learned anomaly score)"
    techniques: ClassVar[tuple[str, ...]] = ()
    learning: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        sql = """
            SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                   score, action, address, agent, region, hour
            FROM behavior_scored
            WHERE in_batch AND NOT human AND established AND score >= ?
        """
        return sql, [run.settings.anomaly_threshold]

    def find(self, run: RunContext) -> list[Hit]:
        return [hit for hit in super().find(run) if hit.ev_key not in run.flagged]

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.MEDIUM if row["score"] >= MEDIUM_SCORE else Severity.LOW

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        top = max(hits, key=lambda hit: hit.facts["score"])
        evidence = [
            f"{len(hits)} event{'s' if len(hits) != 1 else ''} scored at least "
            f"{run.settings.anomaly_threshold:.2f} (highest {top.facts['score']:.2f}): "
            f"{listing([hit.facts['action'] for hit in hits])}",
        ]
        context = [
            f"{what} {listing(values)}"
            for what, values in (
                ("from", [hit.facts["address"] for hit in hits]),
                ("with client", [hit.facts["agent"] for hit in hits]),
                ("in region", [hit.facts["region"] for hit in hits]),
            )
            if any(value is not None for value in values)
        ]
        if context:
            evidence.append(" ".join(context))
        baseline = {
            "threshold": run.settings.anomaly_threshold,
            "highest_score": top.facts["score"],
        }
        return Description(evidence, baseline, [])
