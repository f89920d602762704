"""Renaming every principal, account id and user agent consistently gives the same findings.

This proves that no rule keys on a name, account or client taken from the datasets. Names
are renamed token by token (tokens split on "-" and "_"), so that a policy's resource
pattern such as `policy/fn2-*` keeps matching the renamed policy `policy/<t1>-<t2>`. User
agents keep their client family and whether they are a browser; AWS-managed policy ARNs,
AWS service names and the console's user agents stay, because they are AWS's names, not
the organisation's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from governance_support import AUTHORIZATION_DETAILS, IAM_AS_OF, INVICTUS, INVICTUS_AS_OF

from warden.governance import AuditOptions, AuditReport, run_audit

pytestmark = pytest.mark.datasets

ACCOUNT = re.compile(r"(?<!\d)\d{12}(?!\d)")
ARN = re.compile(
    r"arn:aws:(iam|sts)::(\d{12}|\*):(user|role|group|policy|assumed-role|instance-profile)/([^\s\"']*)"
)
NAME_KEYS = {
    "UserName",
    "RoleName",
    "GroupName",
    "PolicyName",
    "InstanceProfileName",
    "userName",
    "roleName",
    "groupName",
    "policyName",
    "instanceProfileName",
}
# Path segments that AWS defines; they are kept so that service-linked and SSO roles stay
# recognisable, as they are in any account.
AWS_PATHS = ("aws-service-role", "aws-reserved", "sso.amazonaws.com", "service-role")


class Renamer:
    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.agents: dict[str, str] = {}
        self.families: dict[str, str] = {}

    def token(self, token: str) -> str:
        if not token or "*" in token or "?" in token:
            return token
        return self.tokens.setdefault(token, f"n{len(self.tokens) + 1:03d}x")

    def name(self, name: str) -> str:
        # Wildcards stay in place; every other run of characters between separators is renamed.
        parts = re.split(r"([-_*/.@])", name)
        return "".join(part if part in "-_*/.@" or not part else self.token(part) for part in parts)

    def account(self, account: str) -> str:
        return self.accounts.setdefault(account, f"{900000000000 + len(self.accounts) * 7919:012d}")

    def agent(self, agent: str) -> str:
        if agent in ("AWS Internal",) or agent.endswith(".amazonaws.com"):
            return agent
        if "aws-internal/" in agent or "Console" in agent.split("/", 1)[0]:
            return agent  # The AWS console's own back ends send these in every account.
        if agent not in self.agents:
            # A partner prefix and a per-run suffix are not part of the client's family.
            product = re.sub(r"^APN/\S+ \S+ ", "", agent.lstrip("["))
            family = re.split(r"[/ (,\]]", product, maxsplit=1)[0]
            family = re.sub(r"_[0-9a-f-]{36}$", "", family)
            if family == "Mozilla":
                renamed = f"Mozilla/5.0 (agent {len(self.agents) + 1})"
            else:
                new_family = self.families.setdefault(family, f"client{len(self.families) + 1}")
                renamed = f"{new_family}/{len(self.agents) + 1}.0"
            self.agents[agent] = renamed
        return self.agents[agent]

    def arn(self, match: re.Match[str]) -> str:
        # Account ids were already renamed by `text`, so only names change here.
        service, account, kind, rest = match.groups()
        segments = rest.split("/")
        if kind == "assumed-role":
            # role name, then the session name, which is not a principal and stays.
            segments[0] = self.name(segments[0])
        else:
            segments = [s if s in AWS_PATHS else self.name(s) for s in segments]
        return f"arn:aws:{service}::{account}:{kind}/{'/'.join(segments)}"

    def text(self, value: str) -> str:
        if value.startswith("arn:aws:iam::aws:"):
            return value
        value = ACCOUNT.sub(lambda m: self.account(m.group(0)), value)
        return ARN.sub(self.arn, value)

    def walk(self, value, key: str | None = None):
        if isinstance(value, dict):
            return {k: self.walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if key == "userAgent":
            return self.agent(value)
        if key in NAME_KEYS or key == "GroupList":
            return self.name(value)
        return self.text(value)

    def identity(self, identity_id: str) -> str:
        return self.text(identity_id)


def _rename_tree(renamer: Renamer, source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*.json")):
        document = json.loads(path.read_text())
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(renamer.walk(document)))


def _signature(report: AuditReport, rename=lambda text: text) -> set[tuple]:
    return {
        (f.check, str(f.severity), rename(f.identity), tuple(sorted(f.details.get("methods", []))))
        for f in report.findings
    }


@pytest.fixture(scope="module")
def renamed(datasets_dir, tmp_path_factory):
    renamer = Renamer()
    root = tmp_path_factory.mktemp("renamed")
    _rename_tree(renamer, datasets_dir / "aws_iam_authz_details", root / "iam")
    _rename_tree(renamer, datasets_dir / INVICTUS, root / "cloudtrail")
    return renamer, root


def test_iam_findings_survive_renaming(iam_report, renamed):
    renamer, root = renamed
    details = root / "iam" / Path(AUTHORIZATION_DETAILS).name
    report = run_audit(AuditOptions(aws_authorization_details=[details], as_of=IAM_AS_OF))
    assert len(iam_report.findings) > 100
    assert _signature(report) == _signature(iam_report, renamer.identity)


def test_cloudtrail_findings_survive_renaming(invictus_report, renamed):
    renamer, root = renamed
    report = run_audit(AuditOptions(cloudtrail=[root / "cloudtrail"], as_of=INVICTUS_AS_OF))
    assert _signature(report) == _signature(invictus_report, renamer.identity)
    original = {
        renamer.identity(i.id): (i.human, i.created_by and renamer.identity(i.created_by))
        for i in invictus_report.identities + invictus_report.humans
    }
    again = {i.id: (i.human, i.created_by) for i in report.identities + report.humans}
    assert again == original


def test_renaming_changed_the_inputs(renamed):
    renamer, root = renamed
    first = next((root / "cloudtrail").iterdir())
    text = first.read_text()
    assert renamer.accounts
    assert renamer.tokens
    assert renamer.agents
    for account in renamer.accounts:
        assert account not in text


def test_source_names_no_dataset_values(datasets_dir):
    """No principal name, account id, address or user agent of the datasets is in the product."""
    document = json.loads((datasets_dir / AUTHORIZATION_DETAILS).read_text())
    values: set[str] = set()
    for user in document["UserDetailList"]:
        values.add(user["UserName"])
    for role in document["RoleDetailList"]:
        if not role["Path"].startswith("/aws-"):
            values.add(role["RoleName"])
    for path in (datasets_dir / INVICTUS).glob("*.json"):
        for record in json.loads(path.read_text())["Records"]:
            identity = record.get("userIdentity") or {}
            for field in ("userName", "accountId"):
                if identity.get(field):
                    values.add(identity[field])
            address = record.get("sourceIPAddress", "")
            if re.match(r"^\d+\.\d+\.\d+\.\d+$", address):
                values.add(address)
            agent = record.get("userAgent", "")
            if agent and agent != "AWS Internal" and not agent.endswith(".amazonaws.com"):
                values.add(agent)
    values = {v for v in values if len(v) >= 5}
    root = Path(__file__).resolve().parents[2] / "src" / "warden"
    sources = [*root.joinpath("governance").rglob("*.py"), root / "cli" / "audit.py"]
    leaks = {
        (str(path.name), value) for path in sources for value in values if value in path.read_text()
    }
    assert leaks == set()
