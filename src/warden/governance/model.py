"""The inventory model shared by every source connector, check and report.

Identities are keyed by a stable id: the ARN for AWS principals, `k8s:<namespace>:<name>` for
Kubernetes service accounts, the SPIFFE ID for Warden entries and agents, and
`github:<repository>:deploy-key:<id>` or `github:app:<slug>` for GitHub. Connectors merge
what they know about the same id, so one identity seen by three sources is one record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Severity(enum.IntEnum):
    """Finding severity, ordered so that `--fail-on` compares with `>=`."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(member.name.lower() for member in cls)
            raise ValueError(f"invalid severity {text!r}: use one of {names}") from None

    def __str__(self) -> str:
        return self.name.lower()


class Provider(enum.StrEnum):
    AWS = "aws"
    KUBERNETES = "kubernetes"
    GITHUB = "github"
    WARDEN = "warden"
    # A secret found in code or configuration that no source links to an identity.
    CODE = "code"


class Kind(enum.StrEnum):
    """The kind of an identity, in its provider's own terms."""

    AWS_USER = "aws_user"
    AWS_ROLE = "aws_role"
    AWS_ROOT = "aws_root"
    K8S_SERVICE_ACCOUNT = "k8s_service_account"
    K8S_USER = "k8s_user"
    GITHUB_DEPLOY_KEY = "github_deploy_key"
    GITHUB_APP = "github_app"
    WARDEN_ENTRY = "warden_entry"
    WARDEN_AGENT = "warden_agent"
    UNLINKED_SECRET = "unlinked_secret"  # noqa: S105 - a kind name, not a secret


@dataclass
class Credential:
    """A secret or token an identity authenticates with.

    `long_lived` is true for credentials that stay valid until someone revokes them (AWS
    access keys starting with AKIA, passwords, legacy service-account token secrets, deploy
    keys) and false for ones that expire by themselves (ASIA session keys, leases).
    """

    id: str
    type: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    first_used_at: datetime | None = None
    expires_at: datetime | None = None
    long_lived: bool = False
    active: bool = True
    last_rotated_at: datetime | None = None
    # Distinct source addresses and user agents seen with this credential, from activity.
    source_addresses: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    event_count: int = 0


@dataclass
class Identity:
    """One identity, merged across sources."""

    id: str
    kind: Kind
    provider: Provider
    name: str
    account: str | None = None
    created_at: datetime | None = None
    first_used_at: datetime | None = None
    last_used_at: datetime | None = None
    enabled: bool = True
    owner: str | None = None
    owner_source: str | None = None
    created_by: str | None = None
    human: bool = False
    classification: str = "unclassified"
    tags: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    # Facts that checks read, with names documented in docs/checks.md: password_enabled,
    # console_logins, browser_user_agents, service_principals (who may assume a role),
    # event_count, cluster_role_bindings, ...
    facts: dict[str, Any] = field(default_factory=dict)

    def credential(self, credential_id: str, credential_type: str) -> Credential:
        """Return the credential with this id, adding an empty one when it is new."""
        existing = self.credentials.get(credential_id)
        if existing is None:
            existing = Credential(id=credential_id, type=credential_type)
            self.credentials[credential_id] = existing
        return existing


@dataclass(frozen=True)
class Finding:
    """One check's result for one identity.

    `evidence` is a list of plain facts ("policy X allows iam:PassRole on *"); `details`
    carries the same facts in structured form for scripts (the escalation path, hop by hop).
    """

    check: str
    owasp: str
    severity: Severity
    identity: str
    title: str
    evidence: tuple[str, ...]
    remediation: str
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    suppressed_by: dict[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class InputWarning:
    """A problem with the input that did not stop the audit: which file, where, and what."""

    source: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class Inventory:
    """Identities keyed by id, plus the warnings collected while reading sources."""

    def __init__(self) -> None:
        self.identities: dict[str, Identity] = {}
        self.warnings: list[InputWarning] = []
        # Findings that a connector produces directly (leaked secrets, RBAC facts).
        self.findings: list[Finding] = []

    def identity(
        self, identity_id: str, kind: Kind, provider: Provider, name: str, source: str
    ) -> Identity:
        """Return the identity with this id, creating it when it is new, and record the source."""
        existing = self.identities.get(identity_id)
        if existing is None:
            existing = Identity(id=identity_id, kind=kind, provider=provider, name=name)
            self.identities[identity_id] = existing
        existing.sources.add(source)
        return existing

    def warn(self, source: str, path: str, message: str, line: int | None = None) -> None:
        self.warnings.append(InputWarning(source=source, path=path, message=message, line=line))
