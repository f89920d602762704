"""The "IAM Vulnerable" lab export: escalation paths, targets, permissive trust, fp and fn cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from governance_support import AUTHORIZATION_DETAILS, findings_by_name

pytestmark = pytest.mark.datasets

# The lab's escalation targets: already privileged, so they get an administrator or
# wildcard finding instead of a path.
TARGETS = ("privesc-AssumeRole-ending-role", "privesc-high-priv-service-role", "privesc-sre-role")
PERMISSIVE = "privesc-permissive-role-trust"
FALSE_POSITIVES = ("fp1", "fp2", "fp3", "fp4", "fp5")
FALSE_NEGATIVES = ("fn1", "fn2", "fn3", "fn4")


def _lab_names(datasets_dir: Path) -> list[str]:
    document = json.loads((datasets_dir / AUTHORIZATION_DETAILS).read_text())
    return [u["UserName"] for u in document["UserDetailList"]] + [
        r["RoleName"] for r in document["RoleDetailList"]
    ]


def _has_no_policy(datasets_dir: Path, user_name: str) -> bool:
    document = json.loads((datasets_dir / AUTHORIZATION_DETAILS).read_text())
    user = next(u for u in document["UserDetailList"] if u["UserName"] == user_name)
    return not (user["AttachedManagedPolicies"] or user.get("UserPolicyList") or user["GroupList"])


def test_privesc_principals_have_paths(iam_report, datasets_dir):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    expected = [
        name
        for name in _lab_names(datasets_dir)
        if name.startswith("privesc") and name not in TARGETS and name != PERMISSIVE
    ]
    # The export carries no policy at all for the chain's start user (the lab gives it
    # sts:AssumeRole on the starting role), so no path exists in this data.
    start_user = "privesc-AssumeRole-start-user"
    assert _has_no_policy(datasets_dir, start_user)
    expected.remove(start_user)
    missing = [name for name in expected if name not in escalations]
    assert missing == []


def test_privesc_evidence_names_path(iam_report):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    for name, findings in escalations.items():
        for finding in findings:
            assert finding.evidence, name
            assert finding.details["paths"], name
            assert all(
                step["granted_by"] for path in finding.details["paths"] for step in path["steps"]
            ), name


def test_assume_role_chain_is_multi_hop(iam_report):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    starting = escalations["privesc-AssumeRole-starting-role"][0]
    hops = [hop["role"].rsplit("/", 1)[-1] for hop in starting.details["paths"][0]["hops"]]
    assert hops == ["privesc-AssumeRole-intermediate-role", "privesc-AssumeRole-ending-role"]
    assert "privesc-AssumeRole-ending-role" in starting.evidence[0]
    intermediate = escalations["privesc-AssumeRole-intermediate-role"][0]
    assert len(intermediate.details["paths"][0]["hops"]) == 1


def test_sre_user_path_goes_through_group(iam_report):
    finding = findings_by_name(iam_report, "NHI5-PRIVESC")["privesc-sre-user"][0]
    assert any("group privesc-sre-group" in line for line in finding.evidence)
    assert any(
        hop["role"].endswith("/privesc-sre-role")
        for path in finding.details["paths"]
        for hop in path["hops"]
    )


def test_targets_get_privilege_findings(iam_report):
    admins = findings_by_name(iam_report, "NHI5-ADMIN")
    for name in TARGETS:
        assert name in admins, name
    assert admins["privesc-AssumeRole-ending-role"][0].title == "Administrator permissions"
    assert admins["privesc-high-priv-service-role"][0].title == "Administrator permissions"
    assert "iam" in admins["privesc-sre-role"][0].details["services"]


def test_permissive_trust_role_flagged(iam_report):
    trusts = findings_by_name(iam_report, "NHI5-PERMISSIVE-TRUST")
    assert PERMISSIVE in trusts
    assert "own account" in trusts[PERMISSIVE][0].evidence[0]


def test_false_positives_have_no_path(iam_report):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    flagged = [name for name in escalations if name.startswith(FALSE_POSITIVES)]
    assert flagged == []


def test_hard_true_positives_found(iam_report):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    found = sorted(
        {name.split("-", 1)[0] for name in escalations if name.startswith(FALSE_NEGATIVES)}
    )
    # Every one of the lab's hard cases is found, for both the user and the role variant.
    assert found == list(FALSE_NEGATIVES)
    for prefix in FALSE_NEGATIVES:
        assert sum(name.startswith(prefix) for name in escalations) == 2, prefix


def test_condition_constraint_decided_at_as_of(iam_report):
    escalations = findings_by_name(iam_report, "NHI5-PRIVESC")
    fn3 = escalations["fn3-exploitableConditionConstraint-user"][0]
    assert fn3.details["paths"][0]["certain"] is True
    assert "fp5-nonExploitableConditionConstraint-user" not in escalations
