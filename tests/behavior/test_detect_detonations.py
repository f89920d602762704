"""Stratus Red Team detonation logs: which detectors fire on which technique."""

from __future__ import annotations

from pathlib import Path

import pytest
from behavior_support import REQUIRED_COVERAGE, coverage, coverage_markdown

from warden.governance.model import Severity

pytestmark = pytest.mark.datasets

DOCS = Path(__file__).resolve().parents[2] / "docs" / "detectors.md"


def test_required_techniques_fire(detonation_report, datasets_dir):
    table = coverage(detonation_report, datasets_dir)
    missed = [technique for technique in REQUIRED_COVERAGE if not table[technique]]
    assert missed == []


def test_credential_access_detectors(detonation_report, datasets_dir):
    table = coverage(detonation_report, datasets_dir)
    secrets = [
        t for t in REQUIRED_COVERAGE if t.startswith("aws.credential-access.") and "steal" not in t
    ]
    for technique in secrets:
        assert "bulk-secret-access" in table[technique], technique
    stolen = table["aws.credential-access.ec2-steal-instance-credentials"]
    assert "off-workload-credential" in stolen


def test_stolen_session_used_from_operator_address(detonation_report):
    """Only the attack is in that file, so its first use is the home; the shared address
    with the operator's long-term key gives it away."""
    alerts = [a for a in detonation_report.alerts if a.detector == "off-workload-credential"]
    assert len(alerts) == 1
    assert alerts[0].severity == Severity.HIGH
    assert alerts[0].baseline["shared_with"]


def test_persistence_and_evasion_detectors(detonation_report, datasets_dir):
    table = coverage(detonation_report, datasets_dir)
    for technique in REQUIRED_COVERAGE:
        if ".persistence." in technique or "login-profile" in technique:
            assert "nhi-persistence" in table[technique], technique
        if ".defense-evasion." in technique:
            assert "defence-evasion" in table[technique], technique


def test_coverage_table_matches_docs(detonation_report, datasets_dir):
    expected = coverage_markdown(detonation_report, datasets_dir)
    assert expected in DOCS.read_text(), (
        "regenerate with: python tests/behavior/behavior_support.py"
    )
