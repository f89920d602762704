"""Human or non-human: each identity's classification, with the reason.

Explicit declarations win: a tag, label or annotation `warden.io/identity-type` (or
`identity-type`, `nhi`) of `human` or `service`. Then the identity's structure decides. A
service account, a role trusted by a service or attached to an instance profile, a GitHub
key or app and a Warden identity are non-human. A role reached through SSO or SAML and the
root user are human. An IAM user with a console password in use or console sign-ins is
human, and one with only access keys is not.
"""

from __future__ import annotations

from warden.governance.model import Identity, Kind

TYPE_TAG_KEYS = ("warden.io/identity-type", "identity-type", "nhi")
HUMAN_VALUES = ("human", "person", "user")
SERVICE_VALUES = ("service", "workload", "machine", "nhi", "non-human", "bot")
SSO_ROLE_PREFIX = "AWSReservedSSO_"


def classify(identity: Identity) -> None:
    """Set `identity.human` and `identity.classification` (the reason, for people)."""
    human, reason = _decide(identity)
    identity.human = human
    identity.classification = reason
    identity.facts["declared_service"] = reason.startswith("declared") and not human


def _decide(identity: Identity) -> tuple[bool, str]:
    for key in TYPE_TAG_KEYS:
        for candidate in (key, f"label:{key}", f"annotation:{key}"):
            value = identity.tags.get(candidate, "").strip().lower()
            if value in HUMAN_VALUES:
                return True, f"declared human by tag {candidate}"
            if value in SERVICE_VALUES:
                return False, f"declared non-human by tag {candidate}"
    kind = identity.kind
    if kind == Kind.K8S_SERVICE_ACCOUNT:
        return False, "Kubernetes service account"
    if kind == Kind.K8S_USER:
        name = identity.name
        if name.startswith(("system:node:", "system:kube-", "system:apiserver")) or name in (
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:kube-proxy",
        ):
            return False, "Kubernetes system component"
        return True, "Kubernetes user outside the system: namespace"
    if kind in (Kind.GITHUB_APP, Kind.GITHUB_DEPLOY_KEY):
        return False, "GitHub app installation" if kind == Kind.GITHUB_APP else "GitHub deploy key"
    if kind in (Kind.WARDEN_ENTRY, Kind.WARDEN_AGENT):
        return False, "Warden workload identity" if kind == Kind.WARDEN_ENTRY else "Warden agent"
    if kind == Kind.UNLINKED_SECRET:
        return False, "secret found in code, owner identity unknown"
    if kind == Kind.AWS_ROOT:
        return True, "root user of the account, for people only"
    if kind == Kind.AWS_ROLE:
        return _classify_role(identity)
    return _classify_user(identity)


def _classify_role(identity: Identity) -> tuple[bool, str]:
    facts = identity.facts
    path = str(facts.get("path", ""))
    # IAM Identity Center creates its roles under this path. The name alone decides only when
    # no export gave the path, because anyone allowed iam:CreateRole can choose the name.
    sso_path = "/aws-reserved/sso.amazonaws.com/"
    named_like_sso = identity.name.startswith(SSO_ROLE_PREFIX) and "path" not in facts
    if named_like_sso or sso_path in path + identity.id:
        return True, "role assumed through SSO (AWSReservedSSO_*)"
    if "/aws-service-role/" in path or "/aws-service-role/" in identity.id:
        return False, "service-linked role, assumed by an AWS service"
    if facts.get("instance_profiles"):
        return False, "role attached to an instance profile"
    if facts.get("instance_sessions"):
        return False, "role assumed by EC2 instances (sessions named after instance ids)"
    services = facts.get("trusted_services") or facts.get("assumed_by_services")
    if services:
        return False, f"role assumed by a service ({', '.join(sorted(services)[:3])})"
    if facts.get("assumed_via_saml") or (
        facts.get("trusted_federation")
        and any("saml-provider" in f for f in facts.get("trusted_federation", []))
    ):
        return True, "role assumed through SAML federation"
    if facts.get("assumed_via_web_identity"):
        return False, "role assumed with a web identity token (workload federation)"
    return False, "role assumed by other principals, not through SSO"


def _classify_user(identity: Identity) -> tuple[bool, str]:
    facts = identity.facts
    if facts.get("console_events"):
        return True, "console sign-ins seen in CloudTrail"
    if facts.get("password_enabled") and facts.get("password_last_used"):
        return True, "console password in use"
    keys = [c for c in identity.credentials.values() if c.type == "aws_access_key"]
    if keys and not facts.get("password_enabled"):
        return False, "access keys and no console password"
    if keys:
        # A password that no one signs in with, on a user with keys, is a service account's
        # forgotten password (reported by NHI10), not a sign of a person.
        return False, "access keys; console password enabled but never used"
    if facts.get("password_enabled"):
        return True, "console password enabled"
    if facts.get("federated_user"):
        return False, "federated user session (GetFederationToken)"
    return False, "no console password"
