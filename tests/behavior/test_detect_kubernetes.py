"""Kubernetes: the real cluster capture is a quiet baseline; exec, secrets and RBAC episodes fire."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from behavior_support import FALCO, detect, every_alert, k8s_capture, k8s_event, write_lines

from warden.governance.model import Severity

pytestmark = pytest.mark.datasets

SHIFT = timedelta(days=8)
OPERATOR = "system:serviceaccount:kube-prometheus-stack:my-kube-prometheus-stack-operator"
STARTUP_CHECK = "system:serviceaccount:cert-manager:my-cert-manager-startupapicheck"
ARGO_SERVER = "system:serviceaccount:argo-cd:argocd-server"


@pytest.fixture(scope="module")
def capture(datasets_dir, tmp_path_factory):
    """A workspace holding the capture, and the report of that first run."""
    root = tmp_path_factory.mktemp("k8s")
    events = k8s_capture(datasets_dir)
    assert len(events) > 16000
    path = write_lines(root / "day0" / "audit.jsonl", events)
    report = detect(root / "workspace", k8s_audit=[path])
    return root, report, events


@pytest.fixture(scope="module")
def day_eight(capture, datasets_dir):
    """A second run eight days later: the same traffic again, plus three attack episodes."""
    root, _report, _events = capture
    replay = k8s_capture(datasets_dir, SHIFT)
    start = max(
        datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) for e in replay
    )
    episodes = {
        "exec": [
            k8s_event(
                OPERATOR,
                start + timedelta(minutes=5),
                "create",
                "pods",
                subresource="exec",
                namespace="kube-prometheus-stack",
                name="prometheus-0",
            )
        ],
        "secrets": [
            k8s_event(
                STARTUP_CHECK,
                start + timedelta(minutes=6, seconds=n),
                "get",
                "secrets",
                namespace=namespace,
                name=f"credentials-{n}",
            )
            for n, namespace in enumerate(("default", "kube-system", "argo-cd"))
        ],
        "cluster-admin": [
            k8s_event(
                ARGO_SERVER,
                start + timedelta(minutes=7),
                "create",
                "clusterrolebindings",
                namespace=None,
                name="ops-admin",
                code=201,
                request_object={
                    "kind": "ClusterRoleBinding",
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "metadata": {"name": "ops-admin"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "default", "namespace": "default"}
                    ],
                },
            )
        ],
    }
    write_lines(root / "day8" / "audit.jsonl", replay)
    write_lines(root / "day8" / "episodes.jsonl", [e for group in episodes.values() for e in group])
    report = detect(root / "workspace", k8s_audit=[root / "day0", root / "day8"])
    return report, episodes


def test_capture_raises_nothing_for_service_accounts(capture):
    _root, report, _events = capture
    assert report.batch.new_events > 15000
    accounts = [a for a in every_alert(report) if a.identity.startswith("system:serviceaccount:")]
    assert accounts == []


def test_replayed_routine_traffic_raises_nothing(day_eight):
    report, episodes = day_eight
    episode_ids = {e["auditID"] for group in episodes.values() for e in group}
    stray = [a for a in every_alert(report) if not set(a.event_ids) & episode_ids]
    assert stray == []
    assert report.batch.new_events > 15000
    assert report.batch.context_events == 0, "day 0 ended more than the context window earlier"


def test_exec_into_pod_fires(day_eight):
    report, episodes = day_eight
    alert = _alert_for(report, episodes["exec"])
    assert alert.detector == "k8s-sensitive-first-use"
    assert alert.identity == OPERATOR
    assert alert.severity == Severity.HIGH
    assert alert.techniques == ["T1609"]


def test_first_secret_reads_fire(day_eight):
    report, episodes = day_eight
    alert = _alert_for(report, episodes["secrets"])
    assert alert.identity == STARTUP_CHECK
    assert alert.baseline["operation_class"] == "secrets-read"
    assert sorted(alert.event_ids) == sorted(e["auditID"] for e in episodes["secrets"])


def test_cluster_admin_binding_is_critical(day_eight):
    report, episodes = day_eight
    alert = _alert_for(report, episodes["cluster-admin"])
    assert alert.identity == ARGO_SERVER
    assert alert.severity == Severity.CRITICAL
    assert report.alerts[0].id == alert.id


def test_falco_fixtures_parse(datasets_dir, tmp_path):
    report = detect(tmp_path / "workspace", k8s_audit=[datasets_dir / FALCO])
    assert report.batch.new_events == 4
    assert report.warnings == []


def test_cluster_admin_grant_by_new_account_fires(datasets_dir, tmp_path):
    """Falco's binding event, made by a service account: no learning window applies."""
    event = json.loads((datasets_dir / FALCO / "attach_cluster_admin_role.json").read_text())
    event["user"] = {"username": "system:serviceaccount:ci:deployer"}
    path = write_lines(tmp_path / "audit.jsonl", [event])
    report = detect(tmp_path / "workspace", k8s_audit=[path])
    assert [a.detector for a in report.alerts] == ["k8s-sensitive-first-use"]
    assert report.alerts[0].severity == Severity.CRITICAL
    assert report.alerts[0].event_ids == [event["auditID"]]


def _alert_for(report, events):
    ids = {event["auditID"] for event in events}
    matches = [a for a in every_alert(report) if set(a.event_ids) & ids]
    assert len(matches) == 1, [(a.detector, a.identity) for a in matches]
    return matches[0]
