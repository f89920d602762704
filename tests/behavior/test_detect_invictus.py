"""The invictus capture: stolen instance credentials are the top alert, and the labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from behavior_support import (
    INVICTUS,
    OFF_INSTANCE_LABEL,
    STEAL_ROLE,
    detonation_calls,
    evaluation_markdown,
    every_alert,
)

from warden.governance.model import Severity

pytestmark = pytest.mark.datasets

DOCS = Path(__file__).resolve().parents[2] / "docs" / "detectors.md"


def _records(datasets_dir: Path) -> dict[str, dict]:
    records = {}
    for path in sorted((datasets_dir / INVICTUS).glob("*.json")):
        for record in json.loads(path.read_text())["Records"]:
            records[record["eventID"]] = record
    return records


def _steal_role_events(datasets_dir: Path) -> dict[str, dict]:
    return {
        event_id: record
        for event_id, record in _records(datasets_dir).items()
        if f"assumed-role/{STEAL_ROLE}/" in (record.get("userIdentity") or {}).get("arn", "")
    }


def test_off_instance_use_is_top_alert(invictus_report, labels):
    off_instance = {event for event, label in labels.items() if label == OFF_INSTANCE_LABEL}
    top = invictus_report.alerts[0]

    assert top.detector == "off-workload-credential"
    assert top.severity == Severity.CRITICAL
    assert top.identity.endswith(f":role/{STEAL_ROLE}")
    assert set(top.event_ids) == off_instance
    assert all(alert.severity < Severity.CRITICAL for alert in every_alert(invictus_report)[1:])


def test_off_instance_alert_names_home_and_foreign(invictus_report, datasets_dir):
    events = _steal_role_events(datasets_dir)
    top = invictus_report.alerts[0]
    foreign = [events[event] for event in top.event_ids]
    first = min(events.values(), key=lambda record: record["eventTime"])

    assert top.baseline["home_address"] == first["sourceIPAddress"]
    assert top.baseline["observed_addresses"] == sorted({r["sourceIPAddress"] for r in foreign})
    assert top.baseline["home_agent"] != top.baseline["observed_agents"][0]
    assert top.baseline["shared_with"], "the foreign address is a user's address too"
    assert top.drivers, "the score explains itself"


def test_instance_routine_traffic_raises_nothing(
    invictus_report, invictus_short_report, datasets_dir, labels
):
    routine = {
        event for event in _steal_role_events(datasets_dir) if labels[event] != OFF_INSTANCE_LABEL
    }
    assert len(routine) >= 10
    for report in (invictus_report, invictus_short_report):
        flagged = {
            event
            for alert in every_alert(report)
            if alert.detector == "off-workload-credential"
            for event in alert.event_ids
        }
        assert not flagged & routine


def test_labels_match_their_rules(datasets_dir, labels):
    """The label file's rules, checked against the events (see the caveats in the docs)."""
    records = _records(datasets_dir)
    assert set(records) == set(labels)
    for event, label in labels.items():
        agent = records[event].get("userAgent", "")
        if label == "attack:stratus_detonation_or_setup":
            assert "stratus-red-team_" in agent, event
        if label == "setup:stratus_terraform_warmup_cleanup":
            assert "Terraform" in agent, event
            assert "stratus-red-team_" not in agent, event
    off_instance = [records[e] for e, label in labels.items() if label == OFF_INSTANCE_LABEL]
    assert len(off_instance) == 2
    assert len({r["sourceIPAddress"] for r in off_instance}) == 1
    assert all(r["userAgent"].startswith("aws-sdk-go-v2/") for r in off_instance)


def test_most_attack_labels_are_provisioning(datasets_dir, labels):
    records = _records(datasets_dir)
    attack = [records[e] for e, label in labels.items() if label.startswith("attack:stratus")]
    terraform = [r for r in attack if "Terraform" in r.get("userAgent", "")]
    assert len(attack) == 1146
    assert len(terraform) == 932


def test_evaluation_table_matches_docs(
    invictus_report, invictus_short_report, labels, datasets_dir
):
    calls = detonation_calls(datasets_dir, labels)
    expected = evaluation_markdown(invictus_report, invictus_short_report, labels, calls)
    text = DOCS.read_text()
    assert expected in text, "regenerate with: python tests/behavior/behavior_support.py"
