"""Self-describing tokens and platform credentials: JWTs, Kubernetes service account and
bootstrap tokens, Docker registry auths."""

from __future__ import annotations

import base64
import binascii
import re

from warden.scan import validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

_JWT = r"eyJ[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,600}"


def _docker_auth(candidate: Candidate) -> Check | None:
    try:
        decoded = base64.b64decode(candidate.secret, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not password:
        return None
    registry = None
    for match in re.finditer(r'"([^"\s]+)"\s*:\s*\{', candidate.text):
        if match.group(1) not in ("auths", "auth"):
            registry = match.group(1)
    details = {"registry": registry} if registry else {}
    return Check(
        identifier=f"{validators.user_label(user)}@{registry}"
        if registry
        else validators.user_label(user),
        details=details,
        confidence=Confidence.HIGH,
    )


def _bootstrap(candidate: Candidate) -> Check:
    return Check(
        identifier=f"token id {candidate.groups.get('id') or candidate.secret.split('.')[0]}"
    )


RULES = (
    Rule(
        id="jwt",
        name="JSON Web Token",
        provider="JWT",
        kind="bearer_token",
        tier=Tier.STRUCTURAL,
        severity=Severity.HIGH,
        replacement=r.JWT_SVID,
        description="Three base64url parts separated by dots, the first two JSON objects "
        "(`eyJ…`). Decoded offline: `iss` and `sub` become the identifier, `exp` the "
        "lifetime. A token without `exp` never expires; an expired one has low severity.",
        pattern=rf"\b(?P<secret>{_JWT})",
        anchor=r"eyJ[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8}",
        check=validators.jwt_token,
        prefix="eyJ",
        examples=(
            "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtYmlsbGluZyIsImlzcyI6"
            "Imh0dHBzOi8vaWRwLmV4YW1wbGUuY29tIn0.pf9dqcUgxM9ZZ810pkf6Xlx8RtCqtD1GDIWFmbKGYQr8",
        ),
        negative_examples=(
            "eye.eyeable.should be_nil",
            "eyJ0eXAiOiAiVENWMiJ9.RkNWLXdXS3M1RVBfencx.OGY1",
        ),
    ),
    Rule(
        id="kubernetes-service-account-token",
        name="Kubernetes legacy service account token",
        provider="Kubernetes",
        kind="service_account_token",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.KUBERNETES_PROJECTED_TOKEN,
        description="A JWT issued by `kubernetes/serviceaccount`: the token of a "
        "`kubernetes.io/service-account-token` Secret, which never expires. The identifier is "
        "`system:serviceaccount:<namespace>:<name>`.",
        pattern=rf"\b(?P<secret>{_JWT})",
        anchor=r"eyJ[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8}",
        check=validators.kubernetes_service_account_token,
        prefix="eyJ",
        confidence=Confidence.HIGH,
        examples=(
            "token: eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwia3Vi"
            "ZXJuZXRlcy5pby9zZXJ2aWNlYWNjb3VudC9uYW1lc3BhY2UiOiJwcm9kIiwia3ViZXJuZXRlcy5pby9zZXJ2aWNlYWNj"
            "b3VudC9zZXJ2aWNlLWFjY291bnQubmFtZSI6ImRlcGxveWVyIn0.pf9dqcUgxM9ZZ810pkf6Xlx8RtCqtD1GDIWFmbKGYQr8",
        ),
        negative_examples=(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.pf9dqcUgxM9ZZ810pkf6Xlx8RtCqtD1GDIWFmbKGYQr8",
        ),
    ),
    Rule(
        id="kubernetes-bootstrap-token",
        name="Kubernetes bootstrap token",
        provider="Kubernetes",
        kind="bootstrap_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.KUBERNETES_PROJECTED_TOKEN,
        description="`[a-z0-9]{6}.[a-z0-9]{16}` (token id and secret, as `kubeadm` prints "
        "them), with `bootstrap` or `token` in the same lines.",
        pattern=r"(?<![\w.-])(?P<secret>(?P<id>[a-z0-9]{6})\.[a-z0-9]{16})(?![\w.-])",
        anchor=r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b",
        context=r"bootstrap|kubeadm|--token|token:",
        check=_bootstrap,
        prefix="",
        examples=("kubeadm join 10.0.0.1:6443 --token k7vw2f.q4hxbnzd3rmtp6cy",),
        negative_examples=("k7vw2f.q4hxbnzd3rmtp6cy",),
    ),
    Rule(
        id="kubernetes-bootstrap-token-secret",
        name="Kubernetes bootstrap token secret",
        provider="Kubernetes",
        kind="bootstrap_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.KUBERNETES_PROJECTED_TOKEN,
        description="`token-secret` (16 lowercase base36 characters) of a "
        "`bootstrap.kubernetes.io/token` Secret.",
        keys=r"^token-secret$",
        min_length=16,
        value=r"[a-z0-9]{16}",
        examples=("stringData:\n  token-id: k7vw2f\n  token-secret: q4hxbnzd3rmtp6cy",),
        negative_examples=("token-secret: ${TOKEN_SECRET}",),
    ),
    Rule(
        id="docker-registry-auth",
        name="Docker registry credentials (config.json auths)",
        provider="Docker",
        kind="password",
        tier=Tier.STRUCTURAL,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description='`"auth": "<base64 of user:password>"` under `auths` in a Docker '
        "`config.json` or a `.dockerconfigjson` Secret. The identifier is user@registry.",
        pattern=r'"auth"\s*:\s*"(?P<secret>[A-Za-z0-9+/]{6,}={0,2})"',
        check=_docker_auth,
        lines_before=3,
        examples=(
            '{"auths": {"registry.example.org": {\n  "auth": "ZGVwbG95OnMzY3IzdC1wYXNz"\n}}}',
        ),
        negative_examples=('{"auths": {"registry.example.org": {"auth": ""}}}',),
    ),
    Rule(
        id="docker-registry-identity-token",
        name="Docker registry identity token",
        provider="Docker",
        kind="refresh_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`identitytoken` or `registrytoken` in a Docker `config.json`.",
        keys=r"^(?:identitytoken|registrytoken)$",
        min_length=16,
        value=r"[A-Za-z0-9+/=._-]{20,}",
        lifetime=Lifetime.LONG,
        placeholder=PlaceholderPolicy.VALUE,
        examples=('"identitytoken": "9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC"',),
        negative_examples=('"identitytoken": ""',),
    ),
)
