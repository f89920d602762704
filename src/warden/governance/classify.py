"""Human or non-human: each identity's classification, with the reason.

The identity's structure and activity decide first. A service account, a role trusted by
a service or attached to an instance profile, a GitHub key or app and a Warden identity
are non-human. A role reached through SSO or SAML and the root user are human. An IAM user
with a console password in use or console sign-ins is human, and one with only access keys
is not. A user whose access keys software uses and who also signs in to the console is a
non-human identity used by a person, which NHI10 reports.

A tag, label or annotation `warden.io/identity-type` (or `identity-type`, `nhi`) of
`service` makes any identity non-human. One of `human` is an operator's assertion, not
proof, so it decides only where no strong machine evidence contradicts it: a kind that is
non-human by construction, a role that AWS services or instances assume, or access keys
that software uses. Otherwise whoever may tag an identity could hide it from every check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warden.governance.clients import compute_environment, software_family
from warden.governance.model import Identity, Kind

TYPE_TAG_KEYS = ("warden.io/identity-type", "identity-type", "nhi")
HUMAN_VALUES = ("human", "person", "user")
SERVICE_VALUES = ("service", "workload", "machine", "nhi", "non-human", "bot")
SSO_ROLE_PREFIX = "AWSReservedSSO_"
# Client families named in a reason; the `software_key_use` fact lists every key.
MAX_REASON_CLIENTS = 3


@dataclass(frozen=True)
class _Verdict:
    human: bool
    reason: str
    # Strong machine evidence, worded to follow "tagged human by <tag>, but". It is set only
    # where the evidence outweighs an operator's tag that declares the identity a person.
    contradicts_human_tag: str | None = None


def classify(identity: Identity) -> None:
    """Set `identity.human` and `identity.classification` (the reason, for people).

    Also sets the fact `software_key_use` on IAM users whose access keys software uses:
    one line of evidence per key, which NHI10-CONSOLE reports.
    """
    human, reason = _decide(identity)
    identity.human = human
    identity.classification = reason
    identity.facts["declared_service"] = reason.startswith("declared") and not human


def _decide(identity: Identity) -> tuple[bool, str]:
    verdict = _by_structure(identity)
    declaration = _declaration(identity)
    if declaration is None:
        return verdict.human, verdict.reason
    tag, declared_human = declaration
    if not declared_human:
        return False, f"declared non-human by tag {tag}"
    if verdict.contradicts_human_tag is not None:
        return False, f"tagged human by {tag}, but {verdict.contradicts_human_tag}"
    return True, f"declared human by tag {tag}"


def _declaration(identity: Identity) -> tuple[str, bool] | None:
    """Return the tag that declares the identity's type, and whether it declares a person."""
    for key in TYPE_TAG_KEYS:
        for candidate in (key, f"label:{key}", f"annotation:{key}"):
            value = identity.tags.get(candidate, "").strip().lower()
            if value in HUMAN_VALUES:
                return candidate, True
            if value in SERVICE_VALUES:
                return candidate, False
    return None


def _by_structure(identity: Identity) -> _Verdict:
    kind = identity.kind
    if kind == Kind.K8S_SERVICE_ACCOUNT:
        return _machine("Kubernetes service account")
    if kind == Kind.K8S_USER:
        name = identity.name
        if name.startswith(("system:node:", "system:kube-", "system:apiserver")) or name in (
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:kube-proxy",
        ):
            return _Verdict(False, "Kubernetes system component")
        return _Verdict(True, "Kubernetes user outside the system: namespace")
    if kind in (Kind.GITHUB_APP, Kind.GITHUB_DEPLOY_KEY):
        return _machine(
            "GitHub app installation" if kind == Kind.GITHUB_APP else "GitHub deploy key"
        )
    if kind in (Kind.WARDEN_ENTRY, Kind.WARDEN_AGENT):
        return _machine("Warden workload identity" if kind == Kind.WARDEN_ENTRY else "Warden agent")
    if kind == Kind.UNLINKED_SECRET:
        return _Verdict(False, "secret found in code, owner identity unknown")
    if kind == Kind.AWS_ROOT:
        return _Verdict(True, "root user of the account, for people only")
    if kind == Kind.AWS_ROLE:
        return _classify_role(identity)
    return _classify_user(identity)


def _machine(reason: str) -> _Verdict:
    """Return a non-human verdict whose evidence also outweighs a human tag."""
    return _Verdict(False, reason, f"it is a {reason}")


def _classify_role(identity: Identity) -> _Verdict:
    facts = identity.facts
    path = str(facts.get("path", ""))
    # IAM Identity Center creates its roles under this path. The name alone decides only when
    # no export gave the path and nothing shows a machine using the role, because anyone
    # allowed iam:CreateRole can choose the name.
    sso_path = "/aws-reserved/sso.amazonaws.com/"
    if sso_path in path + identity.id:
        return _Verdict(True, "role assumed through SSO (AWSReservedSSO_*)")
    machine = _machine_role(identity)
    if machine is not None:
        if identity.name.startswith(SSO_ROLE_PREFIX):
            return _Verdict(
                False,
                f"named like an SSO role, but it is a {machine.reason}",
                machine.contradicts_human_tag,
            )
        return machine
    if identity.name.startswith(SSO_ROLE_PREFIX) and "path" not in facts:
        return _Verdict(True, "role assumed through SSO (AWSReservedSSO_*)")
    if facts.get("assumed_via_saml") or (
        facts.get("trusted_federation")
        and any("saml-provider" in f for f in facts.get("trusted_federation", []))
    ):
        return _Verdict(True, "role assumed through SAML federation")
    if facts.get("assumed_via_web_identity"):
        return _Verdict(False, "role assumed with a web identity token (workload federation)")
    return _Verdict(False, "role assumed by other principals, not through SSO")


def _machine_role(identity: Identity) -> _Verdict | None:
    """Return the verdict for a role that AWS services or EC2 instances assume, if it is one."""
    facts = identity.facts
    if "/aws-service-role/" in str(facts.get("path", "")) or "/aws-service-role/" in identity.id:
        return _machine("service-linked role, assumed by an AWS service")
    if facts.get("instance_profiles"):
        return _machine("role attached to an instance profile")
    if facts.get("instance_sessions"):
        return _machine("role assumed by EC2 instances (sessions named after instance ids)")
    services = facts.get("trusted_services") or facts.get("assumed_by_services")
    if services:
        return _machine(f"role assumed by a service ({', '.join(sorted(services)[:3])})")
    return None


def _classify_user(identity: Identity) -> _Verdict:
    facts = identity.facts
    evidence, clients = _software_key_use(identity)
    if evidence:
        facts["software_key_use"] = evidence
    else:
        facts.pop("software_key_use", None)
    software = f"software ({', '.join(clients)})" if clients else ""

    console = None
    if facts.get("console_events"):
        console = "console sign-ins seen in CloudTrail"
    elif facts.get("password_enabled") and facts.get("password_last_used"):
        console = "console password in use"
    if console and software:
        # A workload's credential that a person also signs in with (OWASP NHI10).
        return _Verdict(
            False,
            f"access keys used by {software} and {console}: a non-human identity used by a person",
            f"its access keys are used by {software} and it signs in to the console "
            f"({console}): a non-human identity used by a person",
        )
    if console:
        return _Verdict(True, console)

    contradiction = (
        f"its access keys are used by {software} and it never signs in to the console"
        if software
        else None
    )
    keys = [c for c in identity.credentials.values() if c.type == "aws_access_key"]
    if keys and not facts.get("password_enabled"):
        return _Verdict(False, "access keys and no console password", contradiction)
    if keys:
        # A password that no one signs in with, on a user with keys, is a service account's
        # forgotten password (reported by NHI10), not a sign of a person.
        return _Verdict(
            False, "access keys; console password enabled but never used", contradiction
        )
    if facts.get("password_enabled"):
        return _Verdict(True, "console password enabled")
    if facts.get("federated_user"):
        return _Verdict(False, "federated user session (GetFederationToken)")
    return _Verdict(False, "no console password")


def _software_key_use(identity: Identity) -> tuple[list[str], list[str]]:
    """Return the evidence that software uses the user's active access keys.

    Returns one evidence line per key, and short names of the clients for a reason. Only
    programs sign API calls with an access key, because the console signs people in with
    a password. So a key counts when a user agent seen with it names a CLI, an SDK or the
    AWS compute service it runs on. It also counts when its use is recorded with no user
    agent at all, as in the IAM credential report. A key whose every user agent is a
    browser or the console's back end does not count.
    """
    keys = [
        c
        for c in identity.credentials.values()
        if c.type == "aws_access_key" and c.long_lived and c.active
    ]
    # NOTE: the credential report names no key ids, so its slots cannot be matched to the
    # keys CloudTrail saw. When CloudTrail recorded any user agent for the user's keys, the
    # slots' client-less use is left out: those agents show what the clients are.
    agents_known = any(key.user_agents for key in keys)
    evidence: list[str] = []
    clients: list[str] = []
    for key in sorted(keys, key=lambda c: c.id):
        families = sorted({f for f in map(software_family, key.user_agents) if f})
        compute = sorted({c for c in map(compute_environment, key.user_agents) if c})
        used = key.last_used_at is not None or key.event_count > 0
        observations = []
        if families:
            observations.append(f"used by {', '.join(families)}")
        if compute:
            observations.append(f"called from {', '.join(compute)}")
        if not observations and used and not key.user_agents and not agents_known:
            observations.append(f"last used {_date(key.last_used_at)}, client not recorded")
        if not observations:
            continue
        calls = f" in {key.event_count} calls" if key.event_count else ""
        evidence.append(f"access key {key.id} {'; '.join(observations)}{calls}")
        clients.extend(families + compute)
        if not families and not compute:
            clients.append(f"access key last used {_date(key.last_used_at)}")
    names = list(dict.fromkeys(clients))
    if len(names) > MAX_REASON_CLIENTS:
        names = [*names[:MAX_REASON_CLIENTS], f"{len(names) - MAX_REASON_CLIENTS} more"]
    return evidence, names


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "on an unknown date"
