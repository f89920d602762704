"""The output of `aws iam get-account-authorization-details`, as principals with statements.

Each user gets the statements of its inline and managed policies and of its groups' inline
and managed policies. Each role gets its own, plus its trust policy. A managed policy's
statements come from its default version. A policy the export does not contain is reported
once and contributes nothing, because its permissions are unknown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.governance import jsonstream
from warden.governance.iam.policy import PolicySource, Statement, parse_statements


@dataclass
class ManagedPolicy:
    arn: str
    name: str
    statements: list[Statement]
    versions: int
    aws_managed: bool


@dataclass
class Group:
    arn: str
    name: str
    statements: list[Statement]
    managed_policy_arns: list[str]
    members: list[str] = field(default_factory=list)


@dataclass
class Principal:
    """An IAM user or role with every statement that applies to it."""

    arn: str
    name: str
    kind: str  # "user" or "role"
    account: str
    path: str
    created_at: datetime | None
    statements: list[Statement]
    boundary: list[Statement] | None
    groups: list[str]
    managed_policy_arns: list[str]
    tags: dict[str, str]
    trust: list[Statement] = field(default_factory=list)
    trust_document: dict[str, Any] = field(default_factory=dict)
    instance_profiles: list[str] = field(default_factory=list)
    last_used_at: datetime | None = None


@dataclass
class AuthorizationDetails:
    principals: dict[str, Principal]
    groups: dict[str, Group]
    policies: dict[str, ManagedPolicy]
    problems: list[str]

    def users(self) -> list[Principal]:
        return [p for p in self.principals.values() if p.kind == "user"]

    def roles(self) -> list[Principal]:
        return [p for p in self.principals.values() if p.kind == "role"]


def load(path: Path) -> AuthorizationDetails:
    """Read an authorization-details JSON file.

    Raises ValueError naming the file when it is not JSON or lacks every expected list.
    """
    try:
        document = jsonstream.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read authorization details: {error}") from error
    if not isinstance(document, dict) or not any(
        key in document for key in ("UserDetailList", "RoleDetailList", "GroupDetailList")
    ):
        raise ValueError(
            f"{path}: not the output of 'aws iam get-account-authorization-details' "
            "(no UserDetailList, RoleDetailList or GroupDetailList)"
        )
    return parse(document)


def parse(document: dict[str, Any]) -> AuthorizationDetails:
    """Build principals from the export; an item of an unexpected shape becomes a problem."""
    problems: list[str] = []
    policies: dict[str, ManagedPolicy] = {}

    def each(key: str, add: Callable[[dict[str, Any]], None]) -> None:
        items = document.get(key) or []
        if not isinstance(items, list):
            problems.append(f"{key} is not a list; it is skipped")
            return
        for index, item in enumerate(items, start=1):
            try:
                if not isinstance(item, dict):
                    raise TypeError(f"expected an object, found {type(item).__name__}")
                add(item)
            except (AttributeError, TypeError, ValueError) as error:
                problems.append(
                    f"{key} item {index} has an unexpected structure ({error}); it is skipped"
                )

    def add_policy(item: dict[str, Any]) -> None:
        arn = item.get("Arn", "")
        versions = item.get("PolicyVersionList", []) or []
        default = next((v for v in versions if v.get("IsDefaultVersion")), None)
        name = item.get("PolicyName", arn)
        source = PolicySource(name=name, arn=arn, inline=False)
        statements = parse_statements(default.get("Document") if default else None, source)
        policies[arn] = ManagedPolicy(arn, name, statements, len(versions), ":aws:policy/" in arn)

    each("Policies", add_policy)
    missing: set[str] = set()

    def managed(attached: list[dict[str, Any]], via: str) -> tuple[list[Statement], list[str]]:
        statements: list[Statement] = []
        arns: list[str] = []
        for entry in attached or []:
            arn = entry.get("PolicyArn", "")
            arns.append(arn)
            policy = policies.get(arn)
            if policy is None:
                missing.add(arn)
                continue
            statements.extend(
                _with_source(policy.statements, PolicySource(policy.name, arn, False, via))
            )
        return statements, arns

    def inline(entries: list[dict[str, Any]], via: str) -> list[Statement]:
        statements: list[Statement] = []
        for entry in entries or []:
            source = PolicySource(entry.get("PolicyName", "inline"), None, True, via)
            statements.extend(parse_statements(entry.get("PolicyDocument"), source))
        return statements

    groups: dict[str, Group] = {}

    def add_group(item: dict[str, Any]) -> None:
        name = item.get("GroupName", "")
        via = f"group {name}"
        attached, arns = managed(item.get("AttachedManagedPolicies", []), via)
        groups[name] = Group(
            arn=item.get("Arn", ""),
            name=name,
            statements=inline(item.get("GroupPolicyList", []), via) + attached,
            managed_policy_arns=arns,
        )

    each("GroupDetailList", add_group)
    principals: dict[str, Principal] = {}

    def add_user(item: dict[str, Any]) -> None:
        statements = inline(item.get("UserPolicyList", []), "")
        attached, arns = managed(item.get("AttachedManagedPolicies", []), "")
        statements.extend(attached)
        member_of = list(item.get("GroupList", []) or [])
        for group_name in member_of:
            group = groups.get(group_name)
            if group is None:
                problems.append(
                    f"user {item.get('UserName')}: group {group_name} is not in the export"
                )
                continue
            group.members.append(item.get("Arn", ""))
            statements.extend(group.statements)
        principal = _principal(item, "user", statements, member_of, arns, policies, missing)
        principals[principal.arn] = principal

    each("UserDetailList", add_user)

    def add_role(item: dict[str, Any]) -> None:
        statements = inline(item.get("RolePolicyList", []), "")
        attached, arns = managed(item.get("AttachedManagedPolicies", []), "")
        statements.extend(attached)
        principal = _principal(item, "role", statements, [], arns, policies, missing)
        trust_document = item.get("AssumeRolePolicyDocument") or {}
        if isinstance(trust_document, str):
            from urllib.parse import unquote

            try:
                trust_document = json.loads(unquote(trust_document))
            except ValueError:
                trust_document = {}
        principal.trust_document = trust_document
        principal.trust = parse_statements(
            trust_document, PolicySource("trust policy", None, True, "")
        )
        principal.instance_profiles = [
            profile.get("Arn", "") for profile in item.get("InstanceProfileList", []) or []
        ]
        last_used = (item.get("RoleLastUsed") or {}).get("LastUsedDate")
        principal.last_used_at = parse_time(last_used)
        principals[principal.arn] = principal

    each("RoleDetailList", add_role)
    problems.extend(
        f"managed policy {arn} is attached but not in the export; its permissions are not evaluated"
        for arn in sorted(missing)
    )
    return AuthorizationDetails(principals, groups, policies, problems)


def _principal(
    item: dict[str, Any],
    kind: str,
    statements: list[Statement],
    groups: list[str],
    managed_arns: list[str],
    policies: dict[str, ManagedPolicy],
    missing: set[str],
) -> Principal:
    arn = item.get("Arn", "")
    boundary_arn = (item.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    boundary: list[Statement] | None = None
    if boundary_arn:
        policy = policies.get(boundary_arn)
        if policy is None:
            missing.add(boundary_arn)
        else:
            boundary = _with_source(
                policy.statements, PolicySource(policy.name, boundary_arn, False, "boundary")
            )
    tags = {
        str(tag.get("Key")): str(tag.get("Value"))
        for tag in item.get("Tags", []) or []
        if isinstance(tag, dict)
    }
    return Principal(
        arn=arn,
        name=item.get("UserName") or item.get("RoleName") or arn.rsplit("/", 1)[-1],
        kind=kind,
        account=arn.split(":")[4] if arn.count(":") >= 5 else "",
        path=item.get("Path", "/"),
        created_at=parse_time(item.get("CreateDate")),
        statements=statements,
        boundary=boundary,
        groups=groups,
        managed_policy_arns=managed_arns,
        tags=tags,
    )


def _with_source(statements: list[Statement], source: PolicySource) -> list[Statement]:
    from dataclasses import replace

    return [replace(statement, source=source) for statement in statements]


def parse_time(value: Any) -> datetime | None:
    """Parse the time formats of AWS exports ("2023-03-09 10:41:45+00:00", ISO 8601 with Z)."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
