"""IAM policy evaluation: deny wins, NotAction, NotResource, wildcards, conditions, boundaries."""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from warden.governance.iam.policy import (
    PolicySource,
    RequestContext,
    Tri,
    evaluate,
    parse_statements,
    wildcard_match,
)

SOURCE = PolicySource("test-policy", None, True)
CONTEXT = RequestContext(as_of=datetime(2024, 6, 1, tzinfo=UTC))


def statements(*items):
    return parse_statements({"Version": "2012-10-17", "Statement": list(items)}, SOURCE)


def allow(action="*", resource="*", **more):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action="*", resource="*", **more):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def decide(policy, action, resource="*", boundary=None, context=CONTEXT):
    return evaluate(policy, action, resource, context, boundary).allowed


def test_allow_and_implicit_deny():
    policy = statements(allow("s3:GetObject"))
    assert decide(policy, "s3:GetObject") is Tri.TRUE
    assert decide(policy, "s3:PutObject") is Tri.FALSE


def test_explicit_deny_wins_across_policies():
    policy = statements(allow("*")) + statements(deny("iam:*"))
    assert decide(policy, "iam:CreateUser") is Tri.FALSE
    assert decide(policy, "ec2:RunInstances") is Tri.TRUE


def test_actions_match_case_insensitively():
    policy = statements(allow("ssm:sendCommand"))
    assert decide(policy, "ssm:SendCommand") is Tri.TRUE


def test_not_action_allows_everything_else():
    policy = statements(
        {"Effect": "Allow", "NotAction": ["iam:Create*", "iam:Attach*"], "Resource": "*"}
    )
    assert decide(policy, "iam:PutUserPolicy") is Tri.TRUE
    assert decide(policy, "iam:CreateAccessKey") is Tri.FALSE


def test_resource_and_not_resource():
    policy = statements(allow("iam:CreatePolicyVersion", "arn:aws:iam::*:policy/team-*"))
    assert decide(policy, "iam:CreatePolicyVersion", "arn:aws:iam::1:policy/team-a") is Tri.TRUE
    assert decide(policy, "iam:CreatePolicyVersion", "arn:aws:iam::1:policy/other") is Tri.FALSE
    assert decide(policy, "iam:CreatePolicyVersion", "arn:aws:iam::1:policy/TEAM-a") is Tri.FALSE
    excluded = statements(
        {"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}
    )
    assert decide(excluded, "s3:GetObject", "arn:aws:s3:::public/a") is Tri.TRUE
    assert decide(excluded, "s3:GetObject", "arn:aws:s3:::secret/a") is Tri.FALSE


def test_date_conditions_decided_at_as_of():
    after = statements(
        allow(
            "iam:*", Condition={"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}}
        )
    )
    before = statements(
        allow("iam:*", Condition={"DateLessThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}})
    )
    current = statements(
        allow("iam:*", Condition={"DateLessThan": {"aws:CurrentTime": "2025-01-01T00:00:00Z"}})
    )
    assert decide(after, "iam:ListUsers") is Tri.TRUE
    assert decide(before, "iam:ListUsers") is Tri.FALSE
    assert decide(current, "iam:ListUsers") is Tri.TRUE
    late = RequestContext(as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert decide(current, "iam:ListUsers", context=late) is Tri.FALSE


def test_unknown_condition_restricts_and_is_noted():
    policy = statements(
        allow("iam:CreateAccessKey", Condition={"StringEquals": {"aws:ResourceTag/team": "sync"}})
    )
    decision = evaluate(policy, "iam:CreateAccessKey", "*", CONTEXT)
    assert decision.allowed is Tri.UNKNOWN
    assert any("treated as restricting" in note for note in decision.notes)


def test_conditional_deny_leaves_allow_uncertain():
    policy = statements(
        allow("s3:*"), deny("s3:*", Condition={"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})
    )
    decision = evaluate(policy, "s3:GetObject", "*", CONTEXT)
    assert decision.allowed is Tri.UNKNOWN
    assert any(note.startswith("a Deny may not apply") for note in decision.notes)


def test_passed_to_service_condition():
    policy = statements(
        allow(
            "iam:PassRole",
            Condition={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        )
    )
    to_lambda = RequestContext(CONTEXT.as_of, passed_to_service="lambda.amazonaws.com")
    to_ec2 = RequestContext(CONTEXT.as_of, passed_to_service="ec2.amazonaws.com")
    assert decide(policy, "iam:PassRole", context=to_lambda) is Tri.TRUE
    assert decide(policy, "iam:PassRole", context=to_ec2) is Tri.FALSE


def test_permissions_boundary_limits():
    policy = statements(allow("*"))
    boundary = statements(allow("s3:*"))
    assert decide(policy, "s3:GetObject", boundary=boundary) is Tri.TRUE
    assert decide(policy, "iam:CreateUser", boundary=boundary) is Tri.FALSE


def test_policy_text_and_url_encoding():
    document = '{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
    encoded = quote(document, safe="")
    assert decide(parse_statements(encoded, SOURCE), "s3:GetObject") is Tri.TRUE
    assert parse_statements("not json", SOURCE) == []
    assert parse_statements({"Statement": {"Effect": "Maybe"}}, SOURCE) == []


_segment = st.text(alphabet="abcXYZ:/-_.", min_size=0, max_size=8)


@given(
    pattern=st.lists(st.one_of(_segment, st.sampled_from(["*", "?"])), max_size=5).map("".join),
    value=_segment,
)
def test_wildcard_match_agrees_with_fnmatch(pattern, value):
    # fnmatch also treats [ ] as a class; the alphabet leaves them out so both mean the same.
    expected = re.fullmatch(fnmatch.translate(pattern), value, re.DOTALL) is not None
    assert wildcard_match(pattern, value) is expected
