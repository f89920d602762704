"""The invictus CloudTrail capture: every principal and key seen, first and last use, creators."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from governance_support import INVICTUS

pytestmark = pytest.mark.datasets

SESSION = re.compile(r"^arn:aws:sts::(\d+):assumed-role/([^/]+)/")


def _records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.glob("*.json")):
        records.extend(json.loads(path.read_text())["Records"])
    return records


def _owner(identity: dict) -> str | None:
    """The identity an event belongs to, computed independently of the product."""
    kind = identity.get("type")
    if kind == "AssumedRole":
        issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
        if issuer.get("arn"):
            return issuer["arn"]
        match = SESSION.match(identity["arn"])
        return f"arn:aws:iam::{match.group(1)}:role/{match.group(2)}"
    if kind in ("IAMUser", "Root") and identity.get("arn"):
        return identity["arn"]
    return None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _expected(folder: Path):
    principals: dict[str, list[datetime]] = {}
    keys: dict[str, tuple[str, list[datetime]]] = {}
    created: dict[str, str] = {}
    for record in _records(folder):
        identity = record.get("userIdentity") or {}
        owner = _owner(identity)
        moment = _time(record["eventTime"])
        if owner:
            principals.setdefault(owner, []).append(moment)
            key = identity.get("accessKeyId")
            if key:
                keys.setdefault(key, (owner, []))[1].append(moment)
        if record["eventName"] in ("CreateUser", "CreateRole") and not record.get("errorCode"):
            response = record.get("responseElements") or {}
            target = (response.get("user") or response.get("role") or {}).get("arn")
            if target is None:
                name = record["requestParameters"]["roleName"]
                target = f"arn:aws:iam::{record['recipientAccountId']}:role/{name}"
            created[target] = owner
    return principals, keys, created


def test_inventory_lists_every_principal(invictus_report, datasets_dir):
    principals, _keys, _created = _expected(datasets_dir / INVICTUS)
    everyone = {i.id: i for i in invictus_report.identities + invictus_report.humans}
    for arn, moments in principals.items():
        assert arn in everyone, arn
        assert everyone[arn].first_used_at == min(moments), arn
        assert everyone[arn].last_used_at == max(moments), arn


def test_inventory_lists_every_access_key(invictus_report, datasets_dir):
    _principals, keys, _created = _expected(datasets_dir / INVICTUS)
    everyone = {i.id: i for i in invictus_report.identities + invictus_report.humans}
    assert len(keys) > 10
    for key_id, (owner, moments) in keys.items():
        credential = everyone[owner].credentials[key_id]
        assert credential.long_lived is key_id.startswith("AKIA"), key_id
        expected_type = "aws_access_key" if key_id.startswith("AKIA") else "aws_session_key"
        assert credential.type == expected_type
        assert credential.first_used_at == min(moments), key_id
        assert credential.last_used_at == max(moments), key_id


def test_long_lived_and_temporary_keys_both_seen(invictus_report):
    credentials = [
        c
        for i in invictus_report.identities + invictus_report.humans
        for c in i.credentials.values()
    ]
    assert any(c.id.startswith("AKIA") and c.long_lived for c in credentials)
    assert any(c.id.startswith("ASIA") and not c.long_lived for c in credentials)


def test_creators_of_new_identities(invictus_report, datasets_dir):
    _principals, _keys, created = _expected(datasets_dir / INVICTUS)
    everyone = {i.id: i for i in invictus_report.identities + invictus_report.humans}
    assert len(created) >= 10
    for target, creator in created.items():
        assert everyone[target].created_by == creator, target


def test_created_access_keys_are_recorded(invictus_report, datasets_dir):
    everyone = {i.id: i for i in invictus_report.identities + invictus_report.humans}
    for record in _records(datasets_dir / INVICTUS):
        if record["eventName"] != "CreateAccessKey" or record.get("errorCode"):
            continue
        key = record["responseElements"]["accessKey"]
        user = next(i for i in everyone.values() if i.id.endswith(f":user/{key['userName']}"))
        credential = user.credentials[key["accessKeyId"]]
        assert credential.created_at == _time(record["eventTime"])
        assert credential.long_lived is True


def test_instance_role_classified_non_human(invictus_report):
    roles = {i.name: i for i in invictus_report.identities}
    role = roles["stratus-red-team-ec2-steal-credentials-role"]
    assert role.human is False
    assert "instance" in role.classification or "ec2" in role.classification


def _console_and_key_users(folder: Path) -> tuple[set[str], set[str]]:
    """Users with console use, split by whether a CLI or an SDK also signs with their AKIA keys."""
    console: set[str] = set()
    software: set[str] = set()
    for record in _records(folder):
        identity = record.get("userIdentity") or {}
        arn = identity.get("arn")
        if identity.get("type") != "IAMUser" or not arn:
            continue
        agent = record.get("userAgent") or ""
        if record.get("eventType") == "AwsConsoleSignIn" or record.get(
            "sessionCredentialFromConsole"
        ):
            console.add(arn)
        browser_or_aws = agent.lstrip("[").startswith("Mozilla/") or "aws-internal" in agent
        if identity.get("accessKeyId", "").startswith("AKIA") and not browser_or_aws:
            software.add(arn)
    return console & software, console - software


def test_console_use_of_software_keys(invictus_report, datasets_dir):
    hybrid, console_only = _console_and_key_users(datasets_dir / INVICTUS)
    everyone = {i.id: i for i in invictus_report.identities + invictus_report.humans}
    assert hybrid
    assert console_only
    for arn in hybrid:
        assert everyone[arn].human is False, arn
        assert "a non-human identity used by a person" in everyone[arn].classification
        checks = {f.check for f in invictus_report.findings_for(arn)}
        assert "NHI10-CONSOLE" in checks, arn
    for arn in console_only:
        assert everyone[arn].human is True, arn
