"""Deviations from an identity's own history: a new action, a wake-up after dormancy, a
first sensitive Kubernetes operation, and human use of a non-human identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from warden.behavior.detectors.base import Description, RunContext, SqlDetector, listing, moment
from warden.behavior.model import Hit, Severity


class NewAction(SqlDetector):
    """An established identity calls an action it never called and its peers rarely do.

    "Rare and unseen": the identity never performed the action before this event, and at
    most `peer_max_share` of its peers ever did. Writes are medium, reads low. Events that a
    more specific detector reported are left to that detector.
    """

    id: ClassVar[str] = "new-action"
    title: ClassVar[str] = "Action never seen before for an established identity"
    techniques: ClassVar[tuple[str, ...]] = ("T1078.004",)
    learning: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        sql = """
            SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                   action, read_only, failed, action_peer_share, identity_first_seen,
                   prior_events, peer_group
            FROM behavior_scored
            WHERE NOT human AND established AND n_action = 0 AND action_peer_share <= ?
        """
        return sql, [run.settings.peer_max_share]

    def find(self, run: RunContext) -> list[Hit]:
        return [hit for hit in super().find(run) if hit.ev_key not in run.flagged]

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.LOW if row["read_only"] else Severity.MEDIUM

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        first = hits[0].facts
        actions = [hit.facts["action"] for hit in hits]
        shares = {
            hit.facts["action"]: round(float(hit.facts["action_peer_share"]), 2) for hit in hits
        }
        evidence = [
            f"first call of {listing(actions)} by this identity, active since "
            f"{moment(first['identity_first_seen'])} with {first['prior_events']} earlier events",
            "peers that ever called them: "
            + ", ".join(f"{action} {share:.0%}" for action, share in list(shares.items())[:5]),
        ]
        baseline = {
            "new_actions": sorted(set(actions)),
            "identity_first_seen": moment(first["identity_first_seen"]),
            "earlier_events": int(first["prior_events"]),
            "peer_group": first["peer_group"],
            "peer_share": shares,
        }
        return Description(evidence, baseline, list(self.techniques))


class DormantWakeUp(SqlDetector):
    """An identity with no activity for `dormant_after` becomes active again.

    The alert contains the first event after the gap and the events within the alert gap
    after it.
    """

    id: ClassVar[str] = "dormant-wake-up"
    title: ClassVar[str] = "Dormant identity woke up"
    techniques: ClassVar[tuple[str, ...]] = ("T1078.004",)
    humans: ClassVar[bool] = True
    learning: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        dormant = int(run.settings.dormant_after.total_seconds())
        gap = int(run.settings.alert_gap.total_seconds())
        sql = f"""
            WITH wakes AS (
                SELECT identity, ev_key AS wake_key, event_time AS wake_time,
                       previous_event_time, identity_first_seen
                FROM behavior_scored
                WHERE previous_event_time IS NOT NULL
                  AND event_time >= previous_event_time + INTERVAL {dormant} SECOND
            )
            SELECT s.ev_key, s.event_id, s.event_time, s.identity, s.credential, s.human,
                   s.in_batch, s.action, s.address, s.agent, w.wake_key, w.wake_time,
                   w.previous_event_time, w.identity_first_seen
            FROM wakes w JOIN behavior_scored s ON s.identity = w.identity
                AND s.event_time >= w.wake_time
                AND s.event_time < w.wake_time + INTERVAL {gap} SECOND
            QUALIFY row_number() OVER (PARTITION BY s.ev_key ORDER BY w.wake_time DESC) = 1
        """  # noqa: S608
        return sql, ()

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.MEDIUM

    def group(self, row: dict[str, Any]) -> str:
        return str(row["wake_key"])

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        first = hits[0].facts
        idle = first["wake_time"] - first["previous_event_time"]
        evidence = [
            f"no activity from {moment(first['previous_event_time'])} to "
            f"{moment(first['wake_time'])} ({idle.days} days; dormant after "
            f"{run.settings.dormant_after.days} days)",
            f"then {len(hits)} event{'s' if len(hits) != 1 else ''}: "
            f"{listing([hit.facts['action'] for hit in hits])} from "
            f"{listing([hit.facts['address'] for hit in hits])}",
        ]
        baseline = {
            "last_event_before": moment(first["previous_event_time"]),
            "idle_days": idle.days,
            "identity_first_seen": moment(first["identity_first_seen"]),
        }
        return Description(evidence, baseline, list(self.techniques))


class KubernetesFirstUse(SqlDetector):
    """A service account execs into a pod, reads secrets or changes RBAC for the first time.

    Past the learning window only, except a grant of `cluster-admin`, which is reported on
    first use whatever the account's age. The alert contains the first operation of the class
    and the ones of the same class within the alert gap.
    """

    id: ClassVar[str] = "k8s-sensitive-first-use"
    title: ClassVar[str] = "Service account execs, reads secrets or changes RBAC for the first time"
    techniques: ClassVar[tuple[str, ...]] = ("T1609", "T1552.007", "T1098.006")
    learning: ClassVar[bool] = True

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        gap = int(run.settings.alert_gap.total_seconds())
        sql = f"""
            SELECT * FROM (
                SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                       k8s_class, action, resource, failed, established, prior_events,
                       identity_first_seen,
                       min(CASE WHEN n_k8s_class = 0 AND (established OR k8s_class = 'cluster-admin')
                                THEN event_time END)
                           OVER (PARTITION BY identity, k8s_class) AS first_use
                FROM behavior_scored
                WHERE identity_type = 'ServiceAccount' AND NOT human AND k8s_class IS NOT NULL
            )
            WHERE first_use IS NOT NULL AND event_time >= first_use
              AND event_time < first_use + INTERVAL {gap} SECOND
        """  # noqa: S608
        return sql, ()

    def severity(self, row: dict[str, Any]) -> Severity:
        base = _K8S_SEVERITY[row["k8s_class"]]
        if row["failed"] and base > Severity.MEDIUM:
            return Severity.MEDIUM
        return base

    def group(self, row: dict[str, Any]) -> str:
        return str(row["k8s_class"])

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        first = hits[0].facts
        kind = first["k8s_class"]
        evidence = [
            f"first {_K8S_NAMES[kind]} by this service account: "
            f"{listing([hit.facts['action'] + ' ' + (hit.facts['resource'] or '') for hit in hits])}",
            f"active since {moment(first['identity_first_seen'])} with {first['prior_events']} "
            f"earlier events, none of this kind",
        ]
        failed = sum(1 for hit in hits if hit.facts["failed"])
        if failed:
            evidence.append(f"{failed} of {len(hits)} were denied")
        baseline = {
            "operation_class": kind,
            "identity_first_seen": moment(first["identity_first_seen"]),
            "earlier_events": int(first["prior_events"]),
        }
        techniques = [_K8S_TECHNIQUES[kind]]
        return Description(evidence, baseline, techniques)


_K8S_SEVERITY = {
    "exec": Severity.HIGH,
    "secrets-read": Severity.MEDIUM,
    "rbac-change": Severity.HIGH,
    "cluster-admin": Severity.CRITICAL,
}
_K8S_NAMES = {
    "exec": "exec or attach into a pod",
    "secrets-read": "read of secrets",
    "rbac-change": "change of RBAC roles or bindings",
    "cluster-admin": "grant of cluster-admin",
}
_K8S_TECHNIQUES = {
    "exec": "T1609",
    "secrets-read": "T1552.007",
    "rbac-change": "T1098.006",
    "cluster-admin": "T1098.006",
}


class HumanUse(SqlDetector):
    """A non-human identity signs in to the console, uses a console session or is driven
    from a browser. Console use is high, a browser user agent alone medium."""

    id: ClassVar[str] = "human-use-of-nhi"
    title: ClassVar[str] = "Human use of a non-human identity"
    techniques: ClassVar[tuple[str, ...]] = ("T1078.004",)

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        sql = """
            SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                   console, agent, action, address, classification
            FROM behavior_scored
            WHERE NOT human AND human_style
        """
        return sql, ()

    def severity(self, row: dict[str, Any]) -> Severity:
        return Severity.HIGH if row["console"] else Severity.MEDIUM

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        console = sum(1 for hit in hits if hit.facts["console"])
        evidence = [
            f"{console} console event{'s' if console != 1 else ''} and "
            f"{len(hits) - console} browser event{'s' if len(hits) - console != 1 else ''}: "
            f"{listing([hit.facts['action'] for hit in hits])}",
            f"from {listing([hit.facts['address'] for hit in hits])}",
            f"classified non-human: {hits[0].facts['classification']}",
        ]
        baseline = {"classification": hits[0].facts["classification"], "console_events": console}
        return Description(evidence, baseline, list(self.techniques))
