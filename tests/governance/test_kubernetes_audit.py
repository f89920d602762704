"""Kubernetes: service accounts and activity from a real cluster capture and Falco's files."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pytest
from governance_support import FALCO, K8S_CSV, K8S_CSV_COLUMNS, convert_k8s_csv

from warden.governance import AuditOptions, run_audit

pytestmark = pytest.mark.datasets

AS_OF = datetime(2023, 1, 28, tzinfo=UTC)


@pytest.fixture(scope="module")
def k8s_report(datasets_dir, tmp_path_factory):
    converted = tmp_path_factory.mktemp("k8s") / "audit.jsonl"
    written, skipped = convert_k8s_csv(datasets_dir / K8S_CSV, converted)
    assert written > 16000
    assert skipped == 1  # the cut-off last line
    return run_audit(AuditOptions(k8s_audit=[converted, datasets_dir / FALCO], as_of=AS_OF))


def _expected(datasets_dir):
    """Per username: distinct audit ids, first and last time (the CSV has one row per stage)."""
    seen: dict[str, dict[str, datetime]] = {}
    with (datasets_dir / K8S_CSV).open(newline="") as rows:
        for row in csv.reader(rows):
            if len(row) != len(K8S_CSV_COLUMNS):
                continue
            field = dict(zip(K8S_CSV_COLUMNS, row, strict=True))
            received = field["requestReceivedTimestamp"].replace("Z", "+00:00")
            moment = datetime.fromisoformat(received)
            events = seen.setdefault(field["user.username"], {})
            events.setdefault(field["auditID"], moment)
    return seen


def test_service_accounts_with_activity(k8s_report, datasets_dir):
    expected = _expected(datasets_dir)
    accounts = {u: e for u, e in expected.items() if u.startswith("system:serviceaccount:")}
    assert len(accounts) >= 30
    everyone = {i.id: i for i in k8s_report.identities + k8s_report.humans}
    for username, events in accounts.items():
        identity = everyone[username]
        assert identity.kind == "k8s_service_account"
        assert identity.human is False
        assert identity.facts["event_count"] == len(events), username
        assert identity.first_used_at == min(events.values()), username
        assert identity.last_used_at == max(events.values()), username


def test_every_principal_listed(k8s_report, datasets_dir):
    everyone = {i.name for i in k8s_report.identities + k8s_report.humans}
    for username in _expected(datasets_dir):
        service_account = username.startswith("system:serviceaccount:")
        name = username.rsplit(":", 1)[-1] if service_account else username
        assert name in everyone, username


def test_controller_components_are_non_human(k8s_report):
    components = [i for i in k8s_report.identities if i.kind == "k8s_user"]
    assert any(i.name == "system:kube-controller-manager" for i in components)
    assert all(not i.human for i in components)


def test_falco_token_secret_is_legacy_token(k8s_report):
    findings = [f for f in k8s_report.findings if f.check == "NHI4-LEGACY-SA-TOKEN"]
    assert [f.identity for f in findings] == ["system:serviceaccount:sysdig-agent:default"]


def test_falco_created_service_account(k8s_report):
    account_id = "system:serviceaccount:default:myacct"
    account = next(i for i in k8s_report.identities if i.id == account_id)
    assert account.created_by == "minikube-user"
