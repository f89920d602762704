"""Privilege levels, role assumption and privilege-escalation paths of IAM principals.

A path is a known escalation method (see `methods.py`) whose every action the principal's
policies allow on a resource that exists in the account. Principals also inherit the paths
of every role they can assume, hop after hop. A role's trust policy that names the
principal lets it assume the role directly. One that names the whole account or anyone
needs the principal's own policy to allow `sts:AssumeRole` on that role as well.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warden.governance.iam.authorization import AuthorizationDetails, Principal
from warden.governance.iam.methods import METHODS, Level, Method, Target
from warden.governance.iam.policy import (
    Decision,
    RequestContext,
    Statement,
    Tri,
    evaluate,
    evaluate_condition,
    matches_action,
)

# Services whose full control counts as high privilege. Full control of all of them (IAM
# included) is administrator access.
SENSITIVE_SERVICES = (
    "iam",
    "sts",
    "organizations",
    "ec2",
    "s3",
    "lambda",
    "kms",
    "secretsmanager",
    "ssm",
    "cloudformation",
    "rds",
    "dynamodb",
)
# Action names no real service uses, one per common verb: only wildcards such as `*`,
# `iam:*` or a NotAction that leaves the whole service out match all of them, so allowing
# all of them means "every action of the service". A NotAction that excludes `iam:Create*`
# fails the Create probe and so does not count as full control.
_PROBE_VERBS = (
    "Create",
    "Update",
    "Attach",
    "Put",
    "Delete",
    "Get",
    "List",
    "Describe",
    "Pass",
    "Send",
    "Start",
    "Assume",
    "Set",
    "Add",
    "Zz",
)
_PROBE_SUFFIX = "WardenProbe"
MAX_HOPS = 6


@dataclass(frozen=True)
class Hop:
    role: str
    reason: str
    certain: bool


@dataclass
class EscalationPath:
    principal: str
    method: str
    title: str
    hops: tuple[Hop, ...]
    # (action, resource, statements granting it) for every step.
    grants: list[tuple[str, str, list[str]]]
    targets: list[str]
    level: Level
    certain: bool
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Describe the path in one line: hops, method, targets and the grant of each step."""
        hops = " -> ".join(f"assume {_short(hop.role)} ({hop.reason})" for hop in self.hops)
        prefix = "conditional: " if not self.certain else ""
        if self.method == "AssumeRole":
            why = f" ({self.notes[0]})" if self.notes else ""
            return f"{prefix}{hops}; {_short(self.targets[0])} has {self.level} privilege{why}"
        steps = "; ".join(
            f"{action} on {resource} allowed by {' and '.join(sources)}"
            for action, resource, sources in self.grants
        )
        targets = ", ".join(_short(target) for target in self.targets[:5])
        if len(self.targets) > 5:
            targets += f" and {len(self.targets) - 5} more"
        lead = f"{hops} -> " if hops else ""
        return (
            f"{prefix}{lead}{self.method}: {self.title} (targets: {targets}; "
            f"reaches {self.level} privilege): {steps}"
        )


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


@dataclass
class Privilege:
    level: Level
    services: list[str]
    evidence: list[str]


@dataclass
class IamAnalysis:
    privileges: dict[str, Privilege]
    paths: dict[str, list[EscalationPath]]
    reachable: dict[str, list[tuple[Hop, ...]]]
    permissive_trust: dict[str, list[str]]


class Analyzer:
    def __init__(self, details: AuthorizationDetails, as_of: datetime) -> None:
        self.details = details
        self.context = RequestContext(as_of=as_of)
        self.as_of = as_of
        self._group_levels: dict[str, Privilege] = {}
        self._trust_index: dict[str, list[Principal]] | None = None

    def run(self) -> IamAnalysis:
        principals = self.details.principals
        privileges = {
            arn: self.privilege(p.statements, p.boundary) for arn, p in principals.items()
        }
        for name, group in self.details.groups.items():
            self._group_levels[name] = self.privilege(group.statements, None)
        self._privileges = privileges
        edges = {arn: self._assumable(p) for arn, p in principals.items()}
        own_paths = {
            arn: self._own_paths(p) if privileges[arn].level != "admin" else []
            for arn, p in principals.items()
        }
        paths: dict[str, list[EscalationPath]] = {}
        reachable: dict[str, list[tuple[Hop, ...]]] = {}
        for arn in principals:
            chains = _reach(arn, edges)
            reachable[arn] = chains
            if privileges[arn].level == "admin":
                paths[arn] = []
                continue
            found = list(own_paths[arn])
            for chain in chains:
                role = chain[-1].role
                certain = all(hop.certain for hop in chain)
                role_level = privileges[role].level
                if role_level in ("admin", "high"):
                    found.append(
                        EscalationPath(
                            principal=arn,
                            method="AssumeRole",
                            title="assume a more privileged role",
                            hops=chain,
                            grants=[],
                            targets=[role],
                            level=role_level,
                            certain=certain,
                            notes=privileges[role].evidence[:3],
                        )
                    )
                if role_level == "admin":
                    continue
                for inherited in own_paths.get(role, []):
                    found.append(
                        EscalationPath(
                            principal=arn,
                            method=inherited.method,
                            title=inherited.title,
                            hops=chain + inherited.hops,
                            grants=inherited.grants,
                            targets=inherited.targets,
                            level=inherited.level,
                            certain=certain and inherited.certain,
                            notes=inherited.notes,
                        )
                    )
            # A grant on a role the principal can assume is a path to itself.
            assumable = {chain[-1].role for chain in chains}
            for path in found:
                if path.method == "GrantRolePolicy" and assumable & set(path.targets):
                    path.level = "admin"
                    path.title += ", including roles it can assume"
            paths[arn] = found
        permissive = {p.arn: self._permissive(p) for p in self.details.roles()}
        return IamAnalysis(
            privileges, paths, reachable, {arn: why for arn, why in permissive.items() if why}
        )

    # Privilege level.

    def privilege(self, statements: list[Statement], boundary: list[Statement] | None) -> Privilege:
        covered: list[str] = []
        evidence: list[str] = []
        for service in SENSITIVE_SERVICES:
            granting: list[Statement] = []
            for verb in _PROBE_VERBS:
                decision = evaluate(
                    statements, f"{service}:{verb}{_PROBE_SUFFIX}", "*", self.context, boundary
                )
                if decision.allowed is not Tri.TRUE:
                    break
                granting.extend(decision.allowed_by[:1])
            else:
                covered.append(service)
                for statement in granting[:1]:
                    text = statement.describe()
                    if text not in evidence:
                        evidence.append(text)
        if len(covered) == len(SENSITIVE_SERVICES):
            return Privilege("admin", covered, evidence)
        if covered:
            return Privilege("high", covered, evidence)
        return Privilege("standard", [], [])

    # Role assumption.

    def _assumable(self, principal: Principal) -> list[Hop]:
        hops: list[Hop] = []
        for role in self._trust_candidates(principal):
            if role.arn == principal.arn:
                continue
            hop = self.can_assume(principal, role)
            if hop is not None:
                hops.append(hop)
        return hops

    def _trust_candidates(self, principal: Principal) -> list[Principal]:
        """Return the roles whose trust policy could name `principal`, without evaluating it.

        The index keeps the work in proportion to the trust statements that mention a
        principal, instead of comparing every principal with every role.
        """
        if self._trust_index is None:
            index: dict[str, list[Principal]] = {}
            for role in self.details.roles():
                for key in {_trust_key(value) for st in role.trust for value in st.aws_principals}:
                    index.setdefault(key, []).append(role)
            self._trust_index = index
        keys = {principal.arn, f"account:{principal.account}", "*"}
        if principal.kind == "role":
            keys.add(f"session:{principal.account}:{principal.name}")
        found: dict[str, Principal] = {}
        for key in keys:
            for role in self._trust_index.get(key, ()):
                found[role.arn] = role
        return list(found.values())

    def can_assume(self, principal: Principal, role: Principal) -> Hop | None:
        trust = Tri.FALSE
        reason = ""
        needs_identity_policy = False
        for statement in role.trust:
            if not matches_action(statement, "sts:AssumeRole"):
                continue
            named = _trust_names(statement, principal, role)
            if named is None:
                continue
            holds, _notes = evaluate_condition(
                statement.condition, self.context, deny=statement.effect == "Deny"
            )
            if statement.effect == "Deny":
                if holds is Tri.TRUE:
                    return None
                continue
            if holds is Tri.FALSE:
                continue
            direct, why = named
            if holds.value > trust.value or (holds is trust and direct and needs_identity_policy):
                trust = holds
                reason = why
                needs_identity_policy = not direct
        if trust is Tri.FALSE:
            return None
        certain = trust is Tri.TRUE
        if needs_identity_policy:
            decision = evaluate(
                principal.statements, "sts:AssumeRole", role.arn, self.context, principal.boundary
            )
            if decision.allowed is Tri.FALSE:
                return None
            certain = certain and decision.allowed is Tri.TRUE
            reason += "; " + _sources(decision)
        return Hop(role.arn, reason, certain)

    def _permissive(self, role: Principal) -> list[str]:
        reasons: list[str] = []
        for statement in role.trust:
            if statement.effect == "Allow" and matches_action(
                statement, "sts:AssumeRoleWithWebIdentity"
            ):
                reasons.extend(_unrestricted_web_identity(statement))
            if statement.effect != "Allow" or not matches_action(statement, "sts:AssumeRole"):
                continue
            principals = _aws_principals(statement)
            holds, _notes = evaluate_condition(statement.condition, self.context)
            conditional = "" if holds is Tri.TRUE else " (with a condition)"
            for value in principals:
                if value == "*":
                    reasons.append(f"trust policy lets any AWS principal assume it{conditional}")
                elif value.endswith(":root") or value.isdigit():
                    account = value.split(":")[4] if ":" in value else value
                    scope = "its own account" if account == role.account else f"account {account}"
                    reasons.append(
                        f"trust policy lets every principal of {scope} assume it "
                        f"({value}){conditional}"
                    )
        return reasons

    # Escalation methods.

    def _own_paths(self, principal: Principal) -> list[EscalationPath]:
        found: list[EscalationPath] = []
        for method in METHODS:
            if principal.kind not in method.applies_to:
                continue
            path = self._try(principal, method)
            if path is not None:
                found.append(path)
        return found

    def _try(self, principal: Principal, method: Method) -> EscalationPath | None:
        targets: list[str] | None = None
        grants: list[tuple[str, str, list[str]]] = []
        notes: list[str] = []
        certain = True
        for step in method.steps:
            candidates = self._candidates(principal, step.target, method.service)
            if candidates is not None and not candidates:
                return None
            passed_to = method.service if "iam:PassRole" in step.actions else None
            context = RequestContext(self.as_of, passed_to)
            allowed_targets: list[str] = []
            step_grant: tuple[str, str, list[str]] | None = None
            step_certain = False
            for resource in candidates if candidates is not None else [None]:
                for action in step.actions:
                    decision = evaluate(
                        principal.statements, action, resource, context, principal.boundary
                    )
                    if decision.allowed is Tri.FALSE:
                        continue
                    if resource is not None:
                        allowed_targets.append(resource)
                    if step_grant is None or (decision.allowed is Tri.TRUE and not step_certain):
                        step_grant = (action, resource or "*", _statement_sources(decision))
                        step_certain = decision.allowed is Tri.TRUE
                        notes.extend(n for n in decision.notes if n not in notes)
                    break
            if step_grant is None:
                return None
            grants.append(step_grant)
            certain = certain and step_certain
            if candidates is not None:
                kept = list(dict.fromkeys(allowed_targets))
                targets = kept if targets is None else [t for t in targets if t in kept]
                if not targets:
                    return None
        target_list = targets or []
        return EscalationPath(
            principal=principal.arn,
            method=method.id,
            title=method.title,
            hops=(),
            grants=grants,
            targets=target_list,
            level=self._gain_level(method, target_list),
            certain=certain,
            notes=notes,
        )

    def _gain_level(self, method: Method, targets: list[str]) -> Level:
        if method.gain == "self":
            return "admin"
        if method.gain == "grant":
            return "high"
        levels: list[Level] = []
        for target in targets:
            if method.gain == "group":
                group = self._group_levels.get(target.rsplit("/", 1)[-1])
                levels.append(group.level if group else "standard")
            elif target in self._privileges:
                levels.append(self._privileges[target].level)
        for level in ("admin", "high"):
            if level in levels:
                return level
        return "standard"

    def _candidates(
        self, principal: Principal, target: Target, service: str | None
    ) -> list[str] | None:
        details = self.details
        if target == "none":
            return None
        if target == "self":
            return [principal.arn]
        if target in ("own_policies", "other_policies"):
            own = set(principal.managed_policy_arns)
            for group_name in principal.groups:
                group = details.groups.get(group_name)
                if group:
                    own.update(group.managed_policy_arns)
            customer = [arn for arn, policy in details.policies.items() if not policy.aws_managed]
            if target == "own_policies":
                return [arn for arn in customer if arn in own]
            return [arn for arn in customer if arn not in own]
        if target == "own_groups":
            return [details.groups[g].arn for g in principal.groups if g in details.groups]
        if target == "other_groups":
            return [g.arn for name, g in details.groups.items() if name not in principal.groups]
        if target == "any_group":
            return [g.arn for g in details.groups.values()]
        if target == "other_users":
            return [p.arn for p in details.users() if p.arn != principal.arn]
        if target == "other_roles":
            return [p.arn for p in details.roles() if p.arn != principal.arn]
        if target in ("service_roles", "instance_roles"):
            roles = [r for r in details.roles() if service and _trusts_service(r, service)]
            if target == "instance_roles":
                roles = [r for r in roles if r.instance_profiles]
            if service == "ec2.amazonaws.com" and target == "service_roles":
                roles = [r for r in roles if r.instance_profiles]
            return [r.arn for r in roles if r.arn != principal.arn]
        return None


def analyze(details: AuthorizationDetails, as_of: datetime) -> IamAnalysis:
    """Compute privilege levels, assumable roles, escalation paths and permissive trusts."""
    return Analyzer(details, as_of).run()


def _reach(start: str, edges: dict[str, list[Hop]]) -> list[tuple[Hop, ...]]:
    """Find every role reachable from `start`, each by its shortest chain of hops."""
    seen = {start}
    chains: list[tuple[Hop, ...]] = []
    queue: deque[tuple[str, tuple[Hop, ...]]] = deque([(start, ())])
    while queue:
        current, chain = queue.popleft()
        if len(chain) >= MAX_HOPS:
            continue
        for hop in edges.get(current, []):
            if hop.role in seen:
                continue
            seen.add(hop.role)
            extended = (*chain, hop)
            chains.append(extended)
            queue.append((hop.role, extended))
    return chains


def _aws_principals(statement: Statement) -> tuple[str, ...]:
    return statement.aws_principals


def _trust_names(
    statement: Statement, principal: Principal, role: Principal
) -> tuple[bool, str] | None:
    """Return (direct, reason) when a trust statement names `principal`, else None.

    `direct` is true when the statement names the principal itself, so that no identity
    policy is needed in the same account.
    """
    for value in _aws_principals(statement):
        if value == principal.arn:
            direct = principal.account == role.account
            return direct, f"{role.name}'s trust policy names {principal.kind} {principal.name}"
        if value == "*":
            return False, f"{role.name}'s trust policy allows any principal"
        account = (
            value.split(":")[4]
            if value.startswith("arn:") and value.endswith(":root")
            else (value if value.isdigit() else None)
        )
        if account is not None and account == principal.account:
            return False, f"{role.name}'s trust policy allows all of account {account}"
        if principal.kind == "role" and value.startswith("arn:") and ":assumed-role/" in value:
            role_name = value.split(":assumed-role/", 1)[1].split("/", 1)[0]
            if role_name == principal.name and value.split(":")[4] == principal.account:
                session = value.rsplit("/", 1)[-1]
                return (
                    True,
                    f"{role.name}'s trust policy names session {session} of {principal.name}",
                )
    return None


def _unrestricted_web_identity(statement: Statement) -> list[str]:
    """Name each OIDC provider that the statement trusts for every subject it issues tokens to.

    Without a condition on `<provider>:sub`, every subject of the provider may assume the
    role: every repository of a public CI service, every service account of a cluster. A
    negated operator (`StringNotEquals`) restricts nothing, and neither does a list of
    values that contains `*`, because any one value may match.
    """
    reasons = []
    for provider in statement.federated_principals:
        if ":oidc-provider/" not in provider:
            continue
        host = provider.split(":oidc-provider/", 1)[1]
        subject_key = f"{host}:sub".lower()
        restricted = any(
            key.lower() == subject_key and _restricts_subject(values)
            for operator, entries in statement.condition.items()
            if isinstance(entries, dict)
            and operator.startswith("String")
            and not operator.startswith("StringNot")
            for key, values in entries.items()
        )
        if not restricted:
            reasons.append(
                f"trust policy lets every subject of OIDC provider {host} assume it "
                f"(no condition on {host}:sub)"
            )
    return reasons


def _restricts_subject(values: Any) -> bool:
    subjects = {str(value) for value in (values if isinstance(values, list) else [values])}
    return "*" not in subjects and bool(subjects - {""})


def _trust_key(value: str) -> str:
    """Index key of a trust policy's AWS principal: an ARN, an account, a session, or `*`."""
    if value == "*":
        return "*"
    if value.isdigit():
        return f"account:{value}"
    parts = value.split(":")
    if value.startswith("arn:") and value.endswith(":root") and len(parts) >= 5:
        return f"account:{parts[4]}"
    if value.startswith("arn:") and ":assumed-role/" in value and len(parts) >= 5:
        role_name = value.split(":assumed-role/", 1)[1].split("/", 1)[0]
        return f"session:{parts[4]}:{role_name}"
    return value


def _trusts_service(role: Principal, service: str) -> bool:
    for statement in role.trust:
        if (
            statement.effect == "Allow"
            and matches_action(statement, "sts:AssumeRole")
            and (service in statement.service_principals)
        ):
            return True
    return False


def _statement_sources(decision: Decision) -> list[str]:
    return [statement.describe() for statement in decision.allowed_by[:2]]


def _sources(decision: Decision) -> str:
    described = _statement_sources(decision)
    return "its own " + " and ".join(described) if described else "its own policy"
