"""Warden's own audit log is judged like any other source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from warden.behavior import DetectOptions, run_detect
from warden.store import AuditEvent, Datastore

AGENT = "spiffe://example.org/spire/agent/join_token/build-node"
START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_dormant_agent_wakes_up(tmp_path):
    path = tmp_path / "datastore.sqlite3"
    now = [START]
    with Datastore.open(path, clock=lambda: now[0]) as store:
        for day in [*range(10), 50]:
            for minute in range(3):
                now[0] = START + timedelta(days=day, minutes=minute)
                store.append_audit(
                    [
                        AuditEvent(
                            action="svid.x509.sign",
                            actor=AGENT,
                            subject="spiffe://example.org/billing",
                        )
                    ]
                )

    report = run_detect(
        DetectOptions(warden_datastores=[str(path)], workspace=tmp_path / "workspace")
    )

    assert report.batch.new_events == 33
    assert [(a.detector, a.identity) for a in report.alerts] == [("dormant-wake-up", AGENT)]
    assert report.alerts[0].baseline["idle_days"] == 40
    assert len(report.alerts[0].event_ids) == 3
