"""The shipped sample export: owners, roster, suppressions, GitHub, Kubernetes objects, NHI10."""

from __future__ import annotations

import pytest

from warden.governance import run_audit
from warden.governance.sample import sample_options


@pytest.fixture(scope="module")
def sample_report():
    return run_audit(sample_options())


def checks_of(report, identity_suffix: str) -> set[str]:
    return {f.check for f in report.findings if f.identity.endswith(identity_suffix)}


def identity(report, suffix: str):
    return next(i for i in report.identities + report.humans if i.id.endswith(suffix))


def test_sample_reads_without_warnings(sample_report):
    assert sample_report.warnings == []
    assert len(sample_report.identities) == 14


def test_owner_from_each_source(sample_report):
    assert identity(sample_report, "user/legacy-sync").owner_source == "tag owner"
    assert identity(sample_report, "role/payments-api").owner_source == "tag team"
    assert identity(sample_report, "shop:checkout").owner_source == "annotation owner"
    assert identity(sample_report, "ci:ci-runner").owner_source == "label team"
    batch = identity(sample_report, "role/batch-reindex")
    assert batch.owner == "team-data"
    assert batch.owner_source.startswith("ownership map")


def test_creator_becomes_owner_when_nothing_else(sample_report):
    bot = identity(sample_report, "user/reporting-bot")
    assert bot.created_by.endswith("user/ops-admin")
    assert bot.owner == bot.created_by
    assert bot.owner_source == "creator in CloudTrail (CreateAccessKey)"


def test_departed_owner_flagged(sample_report):
    assert "NHI1-OWNER-LEFT" in checks_of(sample_report, "user/legacy-sync")
    assert "NHI1-OWNER-LEFT" not in checks_of(sample_report, "user/ops-admin")


def test_active_suppression_hides_finding(sample_report):
    assert "NHI5-PERMISSIVE-TRUST" not in checks_of(sample_report, "role/vendor-audit")
    suppressed = [f for f in sample_report.suppressed if f.check == "NHI5-PERMISSIVE-TRUST"]
    assert len(suppressed) == 1
    assert suppressed[0].suppressed_by["accepted_by"] == "sam.lindqvist"


def test_expired_suppression_reported(sample_report):
    assert "NHI7-OLD-SECRET" in checks_of(sample_report, "user/legacy-sync")
    expired = sample_report.expired_suppressions
    assert [e["check"] for e in expired] == ["NHI7-OLD-SECRET"]
    assert expired[0]["findings_matched"] == 1
    assert "expired on 2024-04-30" in expired[0]["message"]


def test_passrole_escalation_to_admin_role(sample_report):
    finding = next(
        f
        for f in sample_report.findings
        if f.check == "NHI5-PRIVESC" and f.identity.endswith("user/ci-deployer")
    )
    assert str(finding.severity) == "critical"
    path = finding.details["paths"][0]
    assert path["method"] == "PassRole-Lambda"
    assert path["targets"] == ["arn:aws:iam::210987654321:role/lambda-admin-role"]


def test_unknown_condition_makes_path_conditional(sample_report):
    finding = next(
        f
        for f in sample_report.findings
        if f.check == "NHI5-PRIVESC" and f.identity.endswith("user/legacy-sync")
    )
    assert str(finding.severity) == "high"
    assert finding.evidence[0].startswith("conditional:")
    notes = finding.details["paths"][0]["notes"]
    assert any(
        "aws:ResourceTag/team" in note and "treated as restricting" in note for note in notes
    )


def test_key_reuse_and_human_use(sample_report):
    assert "NHI9-KEY-REUSE" in checks_of(sample_report, "user/ci-deployer")
    bot = checks_of(sample_report, "user/reporting-bot")
    assert {"NHI10-CONSOLE", "NHI10-BROWSER"} <= bot


def test_kubernetes_objects(sample_report):
    assert "NHI5-CLUSTER-ADMIN" in checks_of(sample_report, "ci:ci-runner")
    exporter = checks_of(sample_report, "monitoring:old-exporter")
    assert {"NHI4-LEGACY-SA-TOKEN", "NHI1-DORMANT"} <= exporter
    assert checks_of(sample_report, "shop:checkout") == set()


def test_github_exports(sample_report):
    app = next(
        f
        for f in sample_report.findings
        if f.check == "NHI5-GITHUB-WRITE" and f.identity == "github:app:example-org:release-bot"
    )
    assert str(app.severity) == "high"
    assert "NHI5-GITHUB-WRITE" in checks_of(sample_report, "shop:deploy-key:4101")
    assert "NHI5-GITHUB-WRITE" not in checks_of(sample_report, "docs:deploy-key:4102")


def test_humans_listed_apart(sample_report):
    humans = {i.id.rsplit("/", 1)[-1] for i in sample_report.humans}
    assert "AWSReservedSSO_PlatformAdmin_3f9a1c2b7d4e5f60" in humans
    assert all(not f.identity.endswith(":root") for f in sample_report.findings)


def test_risk_scores_rank_identities(sample_report):
    scores = [sample_report.risks[i.id].score for i in sample_report.identities]
    assert scores == sorted(scores, reverse=True)
    top = sample_report.identities[0]
    assert sample_report.risks[top.id].reasons
    assert sample_report.risks[identity(sample_report, "shop:checkout").id].level == "none"
