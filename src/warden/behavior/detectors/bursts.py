"""Bursts: many distinct read-only calls, or many secrets read, in a short window.

Both count only what is new to the identity, so that a job that lists every resource or
reads its own secrets each time it starts is quiet once its baseline contains them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from warden.behavior.detectors.base import Description, RunContext, SqlDetector, listing, moment
from warden.behavior.model import Hit, Severity


class EnumerationBurst(SqlDetector):
    """At least `enumeration_min_actions` distinct read-only actions within the window, of
    which at least `enumeration_min_new_share` are new to the identity. Past the learning
    window only: a new job's first run enumerates by design."""

    id: ClassVar[str] = "enumeration-burst"
    title: ClassVar[str] = "Enumeration burst: many distinct read-only calls"
    techniques: ClassVar[tuple[str, ...]] = ("T1580", "T1526", "T1087.004")
    humans: ClassVar[bool] = True
    learning: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        settings = run.settings
        window = int(settings.enumeration_window.total_seconds())
        # Only stretches around new read-only actions can hold a burst: the windows are
        # computed there alone, which keeps a run over routine traffic cheap.
        sql = f"""
            WITH news AS (
                SELECT identity, event_time FROM behavior_scored
                WHERE read_only AND established AND n_action = 0
            ),
            spans AS (
                SELECT identity, min(event_time) - INTERVAL {window} SECOND AS low,
                       max(event_time) + INTERVAL {window} SECOND AS high
                FROM news GROUP BY identity HAVING count(*) >= ? * ?
            ),
            reads AS (
                SELECT s.ev_key, s.event_id, s.event_time, s.identity, s.credential, s.human,
                       s.in_batch, s.action, s.n_action, s.failed,
                       count(DISTINCT s.action) OVER w AS distinct_actions,
                       count(DISTINCT CASE WHEN s.n_action = 0 THEN s.action END) OVER w
                           AS new_actions
                FROM behavior_scored s JOIN spans p ON p.identity = s.identity
                    AND s.event_time BETWEEN p.low AND p.high
                WHERE s.read_only AND s.established
                WINDOW w AS (PARTITION BY s.identity ORDER BY s.event_time
                             RANGE BETWEEN INTERVAL {window} SECOND PRECEDING AND CURRENT ROW)
            ),
            triggers AS (
                SELECT identity, event_time AS trigger_time, distinct_actions, new_actions
                FROM reads
                WHERE distinct_actions >= ? AND new_actions >= ? * distinct_actions
            )
            SELECT r.ev_key, r.event_id, r.event_time, r.identity, r.credential, r.human,
                   r.in_batch, r.action, r.n_action, r.failed,
                   max(t.distinct_actions) AS distinct_actions, max(t.new_actions) AS new_actions
            FROM reads r JOIN triggers t ON t.identity = r.identity
                AND r.event_time <= t.trigger_time
                AND r.event_time >= t.trigger_time - INTERVAL {window} SECOND
            GROUP BY ALL
        """  # noqa: S608
        return sql, [
            settings.enumeration_min_actions,
            settings.enumeration_min_new_share,
            settings.enumeration_min_actions,
            settings.enumeration_min_new_share,
        ]

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.MEDIUM

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        actions = sorted({hit.facts["action"] for hit in hits})
        new = sorted({hit.facts["action"] for hit in hits if hit.facts["n_action"] == 0})
        minutes = int(run.settings.enumeration_window.total_seconds() // 60)
        evidence = [
            f"{len(actions)} distinct read-only actions within {minutes} minutes, "
            f"{len(new)} never called before: {listing(new or actions, 8)}",
            f"{len(hits)} calls from {moment(hits[0].event_time)} to {moment(hits[-1].event_time)}",
        ]
        baseline = {
            "distinct_actions": len(actions),
            "new_actions": new,
            "window_seconds": int(run.settings.enumeration_window.total_seconds()),
        }
        return Description(evidence, baseline, list(self.techniques))


class BulkSecretAccess(SqlDetector):
    """At least `secret_min_new` secrets the identity never read before, within the window.

    Counts GetSecretValue, BatchGetSecretValue, GetParameter, GetParameters,
    GetParametersByPath and GetPasswordData, failed attempts included. High when a read
    succeeded, medium when every one failed.
    """

    id: ClassVar[str] = "bulk-secret-access"
    title: ClassVar[str] = "Bulk secret access beyond the baseline"
    techniques: ClassVar[tuple[str, ...]] = ("T1555.006", "T1552")
    humans: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        settings = run.settings
        window = int(settings.secret_window.total_seconds())
        sql = f"""
            WITH reads AS (
                SELECT *, sum(CASE WHEN n_target = 0 THEN weight ELSE 0 END) OVER (
                    PARTITION BY identity ORDER BY event_time
                    RANGE BETWEEN INTERVAL {window} SECOND PRECEDING AND CURRENT ROW) AS new_secrets
                FROM behavior_secret_reads
            ),
            triggers AS (
                SELECT identity, event_time AS trigger_time, new_secrets FROM reads
                WHERE new_secrets >= ?
            )
            SELECT r.ev_key, any_value(r.event_id) AS event_id, any_value(r.event_time) AS event_time,
                   r.identity, any_value(r.credential) AS credential,
                   any_value(r.human) AS human, any_value(r.in_batch) AS in_batch,
                   any_value(r.operation) AS operation, bool_or(r.failed) AS failed,
                   list(DISTINCT r.target) AS targets,
                   max(t.new_secrets) AS new_secrets
            FROM reads r JOIN triggers t ON t.identity = r.identity
                AND r.event_time <= t.trigger_time
                AND r.event_time >= t.trigger_time - INTERVAL {window} SECOND
            GROUP BY r.ev_key, r.identity
        """  # noqa: S608
        return sql, [settings.secret_min_new]

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.MEDIUM if row["failed"] else Severity.HIGH

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        targets = sorted({t for hit in hits for t in hit.facts["targets"]})
        failed = sum(1 for hit in hits if hit.facts["failed"])
        operations = [hit.facts["operation"] for hit in hits]
        minutes = int(run.settings.secret_window.total_seconds() // 60)
        evidence = [
            f"{max(int(hit.facts['new_secrets']) for hit in hits)} secrets never read before by "
            f"this identity within {minutes} minutes ({listing(operations)})",
            f"{len(hits)} calls, {failed} failed; secrets include {listing(targets, 3)}",
        ]
        baseline = {
            "new_secrets": max(int(hit.facts["new_secrets"]) for hit in hits),
            "secrets": targets[:50],
            "window_seconds": int(run.settings.secret_window.total_seconds()),
        }
        return Description(evidence, baseline, list(self.techniques))
