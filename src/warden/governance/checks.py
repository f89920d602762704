"""The checks, each mapped to an OWASP Non-Human Identities Top 10 (2025) category.

Every check has a stable id, a category, a default severity, a title and a remediation;
docs/checks.md documents them. Checks look only at non-human identities: people are listed
apart. Times are measured at the audit's as-of time, never at the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from warden.governance.clients import SERVICE_ADDRESSES, user_agent_family
from warden.governance.iam.escalation import EscalationPath, IamAnalysis
from warden.governance.model import Finding, Identity, Inventory, Kind, Provider, Severity


@dataclass(frozen=True)
class CheckInfo:
    id: str
    owasp: str
    severity: Severity
    title: str
    remediation: str


@dataclass(frozen=True)
class Thresholds:
    unused_days: int = 90
    max_secret_age_days: int = 90
    max_key_addresses: int = 3
    max_key_agent_families: int = 2


@dataclass
class CheckContext:
    inventory: Inventory
    as_of: datetime
    thresholds: Thresholds
    iam: IamAnalysis | None = None
    # Which sources record use, so that "never used" is claimed only where use is visible.
    usage_sources: set[str] = field(default_factory=set)


CHECKS: dict[str, CheckInfo] = {
    info.id: info
    for info in (
        CheckInfo(
            "NHI1-DORMANT",
            "NHI1",
            Severity.MEDIUM,
            "Enabled but unused",
            "Confirm with the owner that nothing needs it, then disable it and delete it "
            "after a grace period.",
        ),
        CheckInfo(
            "NHI1-NEVER-USED",
            "NHI1",
            Severity.MEDIUM,
            "Role or service account never used",
            "Delete it, or record why it exists (owner and review date) if it is standby.",
        ),
        CheckInfo(
            "NHI1-NO-OWNER",
            "NHI1",
            Severity.MEDIUM,
            "No owner",
            "Set an owner tag or label, or add the identity to the ownership map.",
        ),
        CheckInfo(
            "NHI1-OWNER-LEFT",
            "NHI1",
            Severity.HIGH,
            "Owner is not on the roster of active people",
            "Hand the identity to an active owner or decommission it.",
        ),
        CheckInfo(
            "NHI2-LEAKED-SECRET",
            "NHI2",
            Severity.CRITICAL,
            "Secret found in code or configuration",
            "Revoke and rotate the credential now, then remove it from the repository history.",
        ),
        CheckInfo(
            "NHI4-USER-ACCESS-KEY",
            "NHI4",
            Severity.MEDIUM,
            "IAM user with access keys where a role would serve",
            "Replace the user and its keys with a role: an instance profile, IRSA, or OIDC "
            "federation from a Warden SVID.",
        ),
        CheckInfo(
            "NHI4-LEGACY-SA-TOKEN",
            "NHI4",
            Severity.MEDIUM,
            "Legacy service-account token secret",
            "Delete the secret and use projected, expiring tokens (TokenRequest API).",
        ),
        CheckInfo(
            "NHI5-ADMIN",
            "NHI5",
            Severity.CRITICAL,
            "Administrator or wildcard permissions",
            "Replace wildcard grants with the actions and resources the workload uses "
            "(IAM Access Analyzer policy generation helps).",
        ),
        CheckInfo(
            "NHI5-PRIVESC",
            "NHI5",
            Severity.CRITICAL,
            "Privilege-escalation path",
            "Remove the permission that opens the first step, or constrain its resources "
            "and add a permissions boundary.",
        ),
        CheckInfo(
            "NHI5-PERMISSIVE-TRUST",
            "NHI5",
            Severity.HIGH,
            "Role trust policy lets a whole account or anyone assume it",
            "Name the exact principals in the trust policy and add conditions "
            "(aws:PrincipalArn, sts:ExternalId).",
        ),
        CheckInfo(
            "NHI5-CLUSTER-ADMIN",
            "NHI5",
            Severity.CRITICAL,
            "Service account bound to cluster-admin",
            "Bind a role with only the verbs and resources the workload needs.",
        ),
        CheckInfo(
            "NHI5-GITHUB-WRITE",
            "NHI5",
            Severity.MEDIUM,
            "GitHub deploy key or app with write access",
            "Make deploy keys read-only and narrow app permissions and repositories.",
        ),
        CheckInfo(
            "NHI7-OLD-SECRET",
            "NHI7",
            Severity.MEDIUM,
            "Long-lived secret older than the maximum age",
            "Rotate it now and move to short-lived credentials issued on demand.",
        ),
        CheckInfo(
            "NHI9-KEY-REUSE",
            "NHI9",
            Severity.MEDIUM,
            "One credential used from many addresses or clients",
            "Give each workload its own identity and credential.",
        ),
        CheckInfo(
            "NHI10-CONSOLE",
            "NHI10",
            Severity.HIGH,
            "Console password or sign-in on a service identity",
            "Remove the console password and give the person their own identity.",
        ),
        CheckInfo(
            "NHI10-BROWSER",
            "NHI10",
            Severity.MEDIUM,
            "Browser user agent on a workload identity",
            "Find who used the workload's credential from a browser and rotate it.",
        ),
    )
}

# Escalation paths and targets per path listed in a finding's details, most severe first.
# Every principal that can assume a role inherits the role's paths, so without a bound an
# account where many principals reach many roles writes principals x roles x targets.
MAX_DETAIL_PATHS = 50
MAX_DETAIL_TARGETS = 25
SEVERITY_FOR_LEVEL = {
    "admin": Severity.CRITICAL,
    "high": Severity.HIGH,
    "standard": Severity.MEDIUM,
}


def finding(
    check_id: str,
    identity: Identity,
    evidence: list[str],
    severity: Severity | None = None,
    title: str | None = None,
    details: dict[str, Any] | None = None,
) -> Finding:
    info = CHECKS[check_id]
    return Finding(
        check=check_id,
        owasp=info.owasp,
        severity=severity or info.severity,
        identity=identity.id,
        title=title or info.title,
        evidence=tuple(evidence),
        remediation=info.remediation,
        details=details or {},
    )


def run_checks(context: CheckContext) -> list[Finding]:
    findings: list[Finding] = []
    for identity in context.inventory.identities.values():
        if identity.human:
            continue
        for check in _CHECK_FUNCTIONS:
            findings.extend(check(identity, context))
    # Findings that sources produced directly (leaked secrets) also cover people's keys,
    # because a leaked key must be rotated whoever owns it.
    findings.extend(context.inventory.findings)
    return findings


def _days(context: CheckContext, moment: datetime) -> int:
    return (context.as_of - moment) // timedelta(days=1)


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "unknown"


# NHI1: offboarding.


def check_dormant(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    if not identity.enabled:
        return
    limit = context.thresholds.unused_days
    if identity.last_used_at is not None:
        idle = _days(context, identity.last_used_at)
        if idle > limit:
            yield finding(
                "NHI1-DORMANT",
                identity,
                [
                    f"last used {_date(identity.last_used_at)}, {idle} days before "
                    f"{_date(context.as_of)} (limit {limit} days)",
                    "still enabled",
                ],
            )
        return
    if identity.kind in (Kind.AWS_ROLE, Kind.K8S_SERVICE_ACCOUNT):
        return  # NHI1-NEVER-USED covers these.
    if not _use_visible(identity, context) or identity.created_at is None:
        return
    age = _days(context, identity.created_at)
    if age > limit:
        yield finding(
            "NHI1-DORMANT",
            identity,
            [
                f"no use recorded since its creation on {_date(identity.created_at)}, "
                f"{age} days ago",
                "still enabled",
            ],
        )


def check_never_used(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    if identity.kind not in (Kind.AWS_ROLE, Kind.K8S_SERVICE_ACCOUNT) or not identity.enabled:
        return
    if identity.last_used_at is not None or identity.facts.get("pods"):
        return
    if not _use_visible(identity, context):
        return
    if (
        identity.created_at is not None
        and _days(context, identity.created_at) <= context.thresholds.unused_days
    ):
        return
    evidence = [f"created {_date(identity.created_at)}"]
    if identity.kind == Kind.AWS_ROLE:
        evidence.append("no RoleLastUsed in the authorization details and no CloudTrail activity")
    else:
        evidence.append("no pod runs as it and no audit event names it")
    yield finding("NHI1-NEVER-USED", identity, evidence)


def _use_visible(identity: Identity, context: CheckContext) -> bool:
    sources = context.usage_sources
    if identity.provider == Provider.AWS:
        return bool(sources & {"cloudtrail", "aws_authorization_details", "aws_credential_report"})
    if identity.provider == Provider.KUBERNETES:
        return "k8s_audit" in sources
    return bool(sources & {"warden_registry", "github"})


def check_owner(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    if identity.kind == Kind.AWS_ROLE and "/aws-service-role/" in identity.id:
        return  # AWS owns service-linked roles.
    if not identity.owner:
        yield finding(
            "NHI1-NO-OWNER",
            identity,
            [
                "no ownership map rule, owner tag, label or annotation, registry owner or "
                "CloudTrail creator"
            ],
        )
    elif identity.facts.get("owner_active") is False:
        yield finding(
            "NHI1-OWNER-LEFT",
            identity,
            [f"owner {identity.owner} (from {identity.owner_source}) is not on the roster"],
        )


# NHI4: insecure authentication.


def check_user_access_keys(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    if identity.kind != Kind.AWS_USER:
        return
    keys = [
        c
        for c in identity.credentials.values()
        if c.type == "aws_access_key" and c.active and c.long_lived
    ]
    if keys:
        yield finding(
            "NHI4-USER-ACCESS-KEY",
            identity,
            [
                f"active access key {key.id} (created {_date(key.created_at)}, last used "
                f"{_date(key.last_used_at)})"
                for key in keys
            ],
        )


def check_legacy_tokens(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    tokens = [c for c in identity.credentials.values() if c.type == "k8s_legacy_token"]
    if tokens:
        yield finding(
            "NHI4-LEGACY-SA-TOKEN",
            identity,
            [
                f"token secret {token.id.removeprefix('secret:')} of type "
                f"kubernetes.io/service-account-token, created {_date(token.created_at)}, "
                f"last used {_date(token.last_used_at)}"
                for token in tokens
            ],
        )


# NHI5: over-privilege.


def check_iam_privilege(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    analysis = context.iam
    if analysis is None or identity.id not in analysis.privileges:
        return
    privilege = analysis.privileges[identity.id]
    if privilege.level == "admin":
        yield finding(
            "NHI5-ADMIN",
            identity,
            [
                "allowed every action on every resource of all sensitive services",
                *privilege.evidence,
            ],
            title="Administrator permissions",
            details={"services": privilege.services},
        )
    elif privilege.level == "high":
        yield finding(
            "NHI5-ADMIN",
            identity,
            [
                f"allowed every action of {', '.join(privilege.services)} on every resource",
                *privilege.evidence,
            ],
            severity=Severity.HIGH if "iam" in privilege.services else Severity.MEDIUM,
            title="Wildcard permissions on sensitive services",
            details={"services": privilege.services},
        )
    paths = analysis.paths.get(identity.id, [])
    if paths:
        yield _escalation_finding(identity, paths)
    reasons = analysis.permissive_trust.get(identity.id)
    if reasons:
        anyone = any("any AWS principal" in reason for reason in reasons)
        yield finding(
            "NHI5-PERMISSIVE-TRUST",
            identity,
            list(reasons),
            severity=Severity.CRITICAL if anyone else Severity.HIGH,
        )


def _escalation_finding(identity: Identity, paths: list[EscalationPath]) -> Finding:
    order = {"admin": 0, "high": 1, "standard": 2}
    ranked = sorted(paths, key=lambda p: (not p.certain, order[p.level], len(p.hops), p.method))
    best = ranked[0]
    severity = SEVERITY_FOR_LEVEL[best.level]
    if not best.certain:
        severity = Severity(max(Severity.LOW, severity - 1))
    methods = sorted({p.method for p in paths})
    evidence = [path.describe() for path in ranked[:10]]
    if len(ranked) > 10:
        evidence.append(f"and {len(ranked) - 10} more paths")
    details = {
        "methods": methods,
        "paths_total": len(ranked),
        "paths": [
            {
                "method": p.method,
                "hops": [
                    {"role": h.role, "reason": h.reason, "certain": h.certain} for h in p.hops
                ],
                "steps": [{"action": a, "resource": r, "granted_by": s} for a, r, s in p.grants],
                "targets": p.targets[:MAX_DETAIL_TARGETS],
                "targets_total": len(p.targets),
                "reaches": p.level,
                "certain": p.certain,
                "notes": p.notes,
            }
            for p in ranked[:MAX_DETAIL_PATHS]
        ],
    }
    title = f"Privilege-escalation path ({best.method}" + (
        f" after {len(best.hops)} role hop{'s' if len(best.hops) > 1 else ''})"
        if best.hops
        else ")"
    )
    return finding(
        "NHI5-PRIVESC", identity, evidence, severity=severity, title=title, details=details
    )


def check_cluster_admin(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    bindings = [
        b
        for b in identity.facts.get("bindings", [])
        if b.get("role") == "ClusterRole/cluster-admin"
    ]
    if bindings:
        yield finding(
            "NHI5-CLUSTER-ADMIN",
            identity,
            [
                f"{b['binding']} grants ClusterRole cluster-admin"
                + (
                    " cluster-wide"
                    if b.get("scope") == "cluster"
                    else f" in namespace {b.get('scope')}"
                )
                for b in bindings
            ],
        )


def check_github_write(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    if identity.kind == Kind.GITHUB_DEPLOY_KEY and identity.facts.get("read_only") is False:
        yield finding(
            "NHI5-GITHUB-WRITE",
            identity,
            [f"deploy key on {identity.account} has write access (read_only: false)"],
        )
    if identity.kind == Kind.GITHUB_APP and identity.facts.get("write_permissions"):
        permissions = identity.facts["write_permissions"]
        severity = (
            Severity.HIGH
            if {"administration", "organization_administration"} & set(permissions)
            else None
        )
        yield finding(
            "NHI5-GITHUB-WRITE",
            identity,
            [
                f"installation on {identity.account} has {name}: "
                f"{identity.facts['permissions'][name]}"
                for name in permissions
            ],
            severity=severity,
        )


# NHI7: long-lived secrets.


def check_old_secrets(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    limit = context.thresholds.max_secret_age_days
    evidence: list[str] = []
    for credential in identity.credentials.values():
        if not credential.long_lived or not credential.active or credential.expires_at is not None:
            continue
        born = credential.last_rotated_at or credential.created_at
        if born is not None:
            age = _days(context, born)
            if age > limit:
                verb = "last rotated" if credential.last_rotated_at else "created"
                evidence.append(
                    f"{credential.type} {credential.id} {verb} {_date(born)}, {age} days "
                    f"ago; no expiry"
                )
        elif (
            credential.first_used_at is not None
            and _days(context, credential.first_used_at) > limit
        ):
            age = _days(context, credential.first_used_at)
            evidence.append(
                f"{credential.type} {credential.id} in use since at least "
                f"{_date(credential.first_used_at)}, {age} days ago; no expiry"
            )
    if evidence:
        evidence.append(f"maximum age {limit} days")
        yield finding("NHI7-OLD-SECRET", identity, evidence)


# NHI9: reuse.


def _client_addresses(addresses: tuple[str, ...]) -> list[str]:
    return [a for a in addresses if a not in SERVICE_ADDRESSES and not a.endswith(".amazonaws.com")]


def check_key_reuse(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    limits = context.thresholds
    for credential in identity.credentials.values():
        addresses = _client_addresses(credential.source_addresses)
        families = sorted({f for f in map(user_agent_family, credential.user_agents) if f})
        evidence = []
        if len(addresses) > limits.max_key_addresses:
            evidence.append(
                f"{credential.id} used from {len(addresses)} source addresses "
                f"({', '.join(addresses[:6])}); limit {limits.max_key_addresses}"
            )
        if len(families) > limits.max_key_agent_families:
            evidence.append(
                f"{credential.id} used by {len(families)} kinds of client "
                f"({', '.join(families[:6])}); limit {limits.max_key_agent_families}"
            )
        if evidence:
            yield finding(
                "NHI9-KEY-REUSE",
                identity,
                evidence,
                details={
                    "credential": credential.id,
                    "addresses": addresses,
                    "user_agent_families": families,
                },
            )


# NHI10: human use.


def check_human_use(identity: Identity, context: CheckContext) -> Iterator[Finding]:
    facts = identity.facts
    evidence = []
    if facts.get("password_enabled"):
        used = facts.get("password_last_used")
        evidence.append("console password enabled" + (f", last used {_date(used)}" if used else ""))
    if facts.get("console_events"):
        evidence.append(f"{facts['console_events']} console events in CloudTrail")
    if evidence:
        # Keys that software uses show that a workload holds this identity too.
        software = list(facts.get("software_key_use", []))
        title = "Console use of a workload identity" if software else None
        yield finding("NHI10-CONSOLE", identity, evidence + software, title=title)
    browsers = facts.get("browser_user_agents")
    if browsers:
        yield finding(
            "NHI10-BROWSER", identity, [f"browser user agent: {agent}" for agent in browsers[:5]]
        )


_CHECK_FUNCTIONS: tuple[Callable[[Identity, CheckContext], Iterator[Finding]], ...] = (
    check_dormant,
    check_never_used,
    check_owner,
    check_user_access_keys,
    check_legacy_tokens,
    check_iam_privilege,
    check_cluster_admin,
    check_github_write,
    check_old_secrets,
    check_key_reuse,
    check_human_use,
)
