"""Alerts: group hits, attach anomaly scores, reconcile with the alerts of earlier runs.

Hits of one detector, identity and group become one alert while consecutive hits are at
most `alert_gap` apart. A run judges its new events and their context (earlier events of
the same identities, see `warden.behavior.batch`), so its alerts can overlap the stored
ones. Reconciling keeps one alert per finding across runs:

- an alert that shares events with a stored alert of the same detector, identity and group,
  or lies within the gap of one, takes over that alert's id and its events from before the
  context. It is `updated` when its events or severity changed, `previous` otherwise;
- a stored alert inside the re-judged context that no hit supports any more is retracted
  (a late event changed the verdict), except the learned detector's, whose model moves a
  little every run;
- any other alert is `new`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.behavior.model import Alert, Hit, Severity

if TYPE_CHECKING:
    import duckdb

    from warden.behavior.anomaly import AnomalyModel
    from warden.behavior.detectors import Detector, RunContext

LEARNED = "learned-anomaly"


@dataclass(frozen=True)
class Retraction:
    id: str
    detector: str
    identity: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "identity": self.identity,
            "reason": self.reason,
        }


def group_hits(hits: Sequence[Hit], detector: Detector, run: RunContext) -> list[Alert]:
    """Turn one detector's hits into alerts, one per identity, group and burst."""
    by_key: dict[tuple[str, str], list[Hit]] = {}
    for hit in hits:
        by_key.setdefault((hit.identity, hit.group), []).append(hit)
    alerts = []
    gap = run.settings.alert_gap
    for (identity, group), members in by_key.items():
        members.sort(key=lambda hit: (hit.event_time, hit.ev_key))
        chunk: list[Hit] = []
        for hit in members:
            if chunk and hit.event_time - chunk[-1].event_time > gap:
                alerts.append(_alert(chunk, detector, run, identity, group))
                chunk = []
            chunk.append(hit)
        if chunk:
            alerts.append(_alert(chunk, detector, run, identity, group))
    return alerts


def _alert(
    chunk: list[Hit], detector: Detector, run: RunContext, identity: str, group: str
) -> Alert:
    description = detector.describe(chunk, run)
    ids: list[str] = []
    times: list[datetime] = []
    keys: list[str] = []
    seen: set[str] = set()
    for hit in chunk:
        if hit.ev_key in seen:
            continue
        seen.add(hit.ev_key)
        ids.append(hit.event_id or hit.ev_key)
        times.append(hit.event_time)
        keys.append(hit.ev_key)
    credentials = Counter(hit.credential for hit in chunk if hit.credential)
    digest = hashlib.sha256(
        "\x1f".join((detector.id, identity, group, chunk[0].ev_key)).encode()
    ).hexdigest()
    return Alert(
        id=digest[:20],
        detector=detector.id,
        title=detector.title,
        severity=max(hit.severity for hit in chunk),
        identity=identity,
        credential=credentials.most_common(1)[0][0] if credentials else None,
        human=chunk[0].human,
        group=group,
        event_ids=ids,
        event_times=times,
        first_event_time=times[0],
        last_event_time=times[-1],
        techniques=description.techniques,
        evidence=description.evidence,
        baseline=description.baseline,
        ev_keys=keys,
    )


def attach_scores(
    connection: duckdb.DuckDBPyConnection, alerts: Sequence[Alert], model: AnomalyModel | None
) -> None:
    """Give each alert the highest anomaly score of its events, and that event's drivers."""
    from warden.behavior.store import FEATURE_COLUMNS

    if model is None or not alerts:
        return
    keys = sorted({key for alert in alerts for key in alert.ev_keys})
    columns = ", ".join(FEATURE_COLUMNS)
    rows = connection.execute(
        f"SELECT ev_key, score, {columns} FROM behavior_scored "  # noqa: S608
        "WHERE ev_key IN (SELECT unnest(?)) AND score IS NOT NULL",
        [keys],
    ).fetchall()
    by_key = {row[0]: (float(row[1]), row[2:]) for row in rows}
    for alert in alerts:
        scored = [by_key[key] for key in alert.ev_keys if key in by_key]
        if not scored:
            continue
        score, vector = max(scored, key=lambda item: item[0])
        alert.score = score
        alert.drivers = model.drivers(vector)


def reconcile(
    connection: duckdb.DuckDBPyConnection,
    alerts: list[Alert],
    gap: timedelta,
    run_number: int,
) -> tuple[list[Alert], list[Retraction]]:
    """Match this run's alerts with stored ones, store the result; return it and retractions."""
    starts = dict(
        connection.execute(
            "SELECT identity, min(event_time) FROM behavior_work GROUP BY identity"
        ).fetchall()
    )
    stored = _stored_in_region(connection)
    by_finding: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in stored:
        by_finding.setdefault((row["detector"], row["identity"], row["group_key"]), []).append(row)

    matched: set[str] = set()
    result: list[Alert] = []
    for alert in sorted(alerts, key=lambda a: a.first_event_time):
        candidates = [
            row
            for row in by_finding.get((alert.detector, alert.identity, alert.group), [])
            if row["id"] not in matched and _overlaps(row, alert, gap)
        ]
        if not candidates:
            alert.status = "new"
            result.append(alert)
            continue
        candidates.sort(key=lambda row: row["first_event_time"])
        keep = candidates[0]
        start = starts.get(alert.identity)
        before = [
            (event_id, moment)
            for row in candidates
            for event_id, moment in zip(row["event_ids"], row["event_times"], strict=True)
            if start is not None and moment < start
        ]
        merged = sorted(
            {*before, *zip(alert.event_ids, alert.event_times, strict=True)},
            key=lambda item: (item[1], item[0]),
        )
        old_ids = set(keep["event_ids"])
        alert.id = keep["id"]
        alert.event_ids = [event_id for event_id, _ in merged]
        alert.event_times = [moment for _, moment in merged]
        alert.first_event_time = alert.event_times[0]
        alert.last_event_time = alert.event_times[-1]
        unchanged = (
            set(alert.event_ids) == old_ids
            and str(alert.severity) == keep["severity"]
            and len(candidates) == 1
        )
        alert.status = "previous" if unchanged else "updated"
        for row in candidates:
            matched.add(row["id"])
        result.append(alert)

    reported = {alert.id for alert in result}
    retractions = []
    for row in stored:
        if row["id"] in reported or row["detector"] == LEARNED:
            continue
        if row["id"] in matched:
            retractions.append(
                Retraction(row["id"], row["detector"], row["identity"], "merged into another alert")
            )
        elif row["inside"]:
            # NOTE: a stored alert that starts before the re-judged region is kept as it was
            # even when the region no longer supports it. Only alerts wholly inside it are
            # retracted.
            retractions.append(
                Retraction(
                    row["id"],
                    row["detector"],
                    row["identity"],
                    "no longer supported once late events were judged in order",
                )
            )
    _save(connection, result, retractions, run_number)
    return result, retractions


def _overlaps(row: dict[str, Any], alert: Alert, gap: timedelta) -> bool:
    if set(row["event_ids"]) & set(alert.event_ids):
        return True
    return bool(
        row["first_event_time"] - gap <= alert.last_event_time
        and alert.first_event_time <= row["last_event_time"] + gap
    )


def _stored_in_region(connection: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Stored alerts whose last event lies in the region this run judged for its identity."""
    result = connection.execute(
        """
        SELECT a.id, a.detector, a.identity, a.group_key, a.severity, a.first_event_time,
               a.last_event_time, a.event_ids, a.event_times, a.first_event_time >= w.start AS inside
        FROM behavior_alerts a
        JOIN (SELECT identity, min(event_time) AS start FROM behavior_work GROUP BY identity) w
            ON w.identity = a.identity
        WHERE a.last_event_time >= w.start
        """
    )
    names = [column[0] for column in result.description or ()]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _save(
    connection: duckdb.DuckDBPyConnection,
    alerts: Sequence[Alert],
    retractions: Sequence[Retraction],
    run_number: int,
) -> None:
    for retraction in retractions:
        connection.execute("DELETE FROM behavior_alerts WHERE id = ?", [retraction.id])
    changed = [alert for alert in alerts if alert.status != "previous"]
    if not changed:
        return
    ids = [alert.id for alert in changed]
    # An updated alert keeps the run that first raised it.
    raised = dict(
        connection.execute(
            "SELECT id, raised_run FROM behavior_alerts WHERE id IN (SELECT unnest(?))", [ids]
        ).fetchall()
    )
    connection.execute("DELETE FROM behavior_alerts WHERE id IN (SELECT unnest(?))", [ids])
    connection.executemany(
        f"INSERT INTO behavior_alerts VALUES ({', '.join('?' * 19)})",  # noqa: S608
        [
            (
                alert.id,
                alert.detector,
                str(alert.severity),
                alert.identity,
                alert.credential,
                alert.human,
                alert.group,
                alert.title,
                alert.first_event_time,
                alert.last_event_time,
                alert.event_ids,
                alert.event_times,
                alert.techniques,
                alert.evidence,
                json.dumps(alert.baseline, default=str),
                alert.score,
                json.dumps([driver.to_json() for driver in alert.drivers]),
                raised.get(alert.id, run_number),
                run_number,
            )
            for alert in changed
        ],
    )


def load_stored(
    connection: duckdb.DuckDBPyConnection, updated_run: int | None = None
) -> list[Alert]:
    """Load the stored alerts as they were raised or last updated, with status `previous`.

    With `updated_run`, load only the alerts that run raised or updated, with status `new`
    or `updated`.
    """
    from warden.behavior.model import Driver

    result = connection.execute(
        "SELECT id, detector, title, severity, identity, credential, human, group_key, "
        "event_ids, event_times, first_event_time, last_event_time, techniques, evidence, "
        "baseline, score, drivers, raised_run FROM behavior_alerts "
        "WHERE ? IS NULL OR updated_run = ?",
        [updated_run, updated_run],
    )
    alerts = []
    for row in result.fetchall():
        drivers = [Driver(**item) for item in json.loads(row[16] or "[]")]
        status = "previous"
        if updated_run is not None:
            status = "new" if row[17] == updated_run else "updated"
        alerts.append(
            Alert(
                id=row[0],
                detector=row[1],
                title=row[2],
                severity=Severity.parse(row[3]),
                identity=row[4],
                credential=row[5],
                human=bool(row[6]),
                group=row[7] or "",
                event_ids=list(row[8] or []),
                event_times=list(row[9] or []),
                first_event_time=row[10],
                last_event_time=row[11],
                techniques=list(row[12] or []),
                evidence=list(row[13] or []),
                baseline=json.loads(row[14] or "{}"),
                score=row[15],
                drivers=drivers,
                status=status,
            )
        )
    return alerts
