"""Owner resolution, roster checks and suppression files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from warden.governance import suppressions
from warden.governance.model import Finding, Identity, Kind, Provider, Severity
from warden.governance.owners import load_ownership_map, load_roster, resolve_owner

KEYS = ("owner", "team")


def role(name: str, **tags: str) -> Identity:
    return Identity(
        id=f"arn:aws:iam::111122223333:role/{name}",
        kind=Kind.AWS_ROLE,
        provider=Provider.AWS,
        name=name,
        tags=dict(tags),
    )


def test_map_wins_over_tags(tmp_path):
    rules_path = tmp_path / "owners.yaml"
    rules_path.write_text("'arn:aws:iam::*:role/pay-*': team-payments\n")
    identity = role("pay-api", owner="someone")
    resolve_owner(identity, load_ownership_map(rules_path), KEYS, None)
    assert (identity.owner, identity.owner_source) == (
        "team-payments",
        "ownership map (arn:aws:iam::*:role/pay-*)",
    )


def test_tag_keys_in_order_and_case():
    identity = role("api", Team="platform")
    resolve_owner(identity, [], KEYS, None)
    assert (identity.owner, identity.owner_source) == ("platform", "tag team")


def test_roster_marks_departed_owner(tmp_path):
    roster_path = tmp_path / "roster.txt"
    roster_path.write_text("# people\nAlice@example.com\nteam-platform\n")
    roster = load_roster(roster_path)
    present = role("a", owner="alice@example.com")
    gone = role("b", owner="bob@example.com")
    for identity in (present, gone):
        resolve_owner(identity, [], KEYS, roster)
    assert present.facts["owner_active"] is True
    assert gone.facts["owner_active"] is False


def test_invalid_ownership_map(tmp_path):
    path = tmp_path / "owners.json"
    path.write_text('[{"pattern": "x*"}]')
    with pytest.raises(ValueError, match="rule 1 needs a pattern and an owner"):
        load_ownership_map(path)


def _finding(identity: str, check: str = "NHI1-DORMANT") -> Finding:
    return Finding(
        check=check,
        owasp="NHI1",
        severity=Severity.MEDIUM,
        identity=identity,
        title="t",
        evidence=("e",),
        remediation="r",
    )


def test_suppression_applies_until_end_of_day(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "- check: NHI1-DORMANT\n  identity: 'arn:*:role/ci-*'\n"
        "  accepted_by: alice\n  reason: migration\n  expires: 2024-05-31\n"
    )
    accepted = suppressions.load(path)
    assert accepted[0].expires == date(2024, 5, 31)
    findings = [_finding("arn:aws:iam::1:role/ci-runner"), _finding("arn:aws:iam::1:role/other")]

    late_evening = datetime(2024, 5, 31, 23, 59, tzinfo=UTC)
    active, hidden, expired = suppressions.apply(findings, accepted, late_evening)
    assert [f.identity for f in active] == ["arn:aws:iam::1:role/other"]
    assert hidden[0].suppressed_by["accepted_by"] == "alice"
    assert expired == []

    next_day = datetime(2024, 6, 1, tzinfo=UTC)
    active, hidden, expired = suppressions.apply(findings, accepted, next_day)
    assert len(active) == 2
    assert hidden == []
    assert expired[0]["findings_matched"] == 1


def test_suppression_needs_every_field(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(
        '[{"check": "*", "identity": "*", "accepted_by": "a", "reason": "r", "expires": "soon"}]'
    )
    with pytest.raises(ValueError, match="invalid expires 'soon'; use YYYY-MM-DD"):
        suppressions.load(path)
    path.write_text('{"suppressions": [{"check": "*"}]}')
    with pytest.raises(ValueError, match="missing identity, accepted_by, reason, expires"):
        suppressions.load(path)


def test_wildcard_check_matches_any():
    accepted = [suppressions.Suppression("*", "x", "a", "r", date(2030, 1, 1))]
    finding = replace(_finding("x"), check="NHI9-KEY-REUSE")
    active, hidden, _ = suppressions.apply([finding], accepted, datetime(2024, 1, 1, tzinfo=UTC))
    assert active == []
    assert len(hidden) == 1
