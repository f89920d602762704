"""Leaked secrets found by `warden.scan`, added to the inventory as NHI2 findings.

A finding whose format names its credential (`identifier`, such as an AWS access key id) is
attached to the identity that owns that credential. The owner is known for a key seen in
CloudTrail as `userIdentity.accessKeyId`, created by a `CreateAccessKey` event, or listed
by `ListAccessKeys` in live collection. A secret that cannot be linked gets an identity of
its own, `leaked:<fingerprint>`, and the evidence says why it could not be linked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from warden.governance.checks import CHECKS
from warden.governance.model import Finding, Identity, Inventory, Kind, Provider, Severity

log = logging.getLogger(__name__)

SOURCE = "secrets"


class LeakedSecret(Protocol):
    """The fields of `warden.scan.model.Finding` that governance reads; none is a secret."""

    @property
    def rule_id(self) -> str: ...
    @property
    def rule_name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def long_lived(self) -> bool | None: ...
    @property
    def path(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def redacted(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def identifier(self) -> str | None: ...
    @property
    def commit(self) -> str | None: ...


Scanner = Callable[[Path], Iterable[LeakedSecret]]


def default_scanner(key_directory: Path | None = None) -> Scanner:
    """Return a scanner backed by `warden.scan.scan_paths` (files only, no git history).

    `key_directory` contains the scanner's HMAC key; None uses the scanner's default folder.
    Raises RuntimeError when `warden.scan` cannot be imported.
    """
    try:
        from warden.scan import scan_paths
    except ImportError as error:
        raise RuntimeError(f"secret scanning is not available: {error}") from error

    def run(path: Path) -> Iterable[LeakedSecret]:
        result = scan_paths([path], git=False, workspace=key_directory)
        for warning in result.warnings:
            log.warning(
                "secret scan skipped part of a file",
                extra={"path": warning.path, "error": warning.message},
            )
        findings: list[LeakedSecret] = list(result.findings)
        return findings

    return run


def add_leaked_secrets(
    inventory: Inventory,
    paths: Sequence[Path],
    sources: list[dict[str, Any]],
    scanner: Scanner | None = None,
    key_directory: Path | None = None,
) -> None:
    """Scan `paths` and add one NHI2 finding per leaked secret, linked where possible."""
    try:
        scan = scanner or default_scanner(key_directory)
    except RuntimeError as error:
        for path in paths:
            inventory.warn(SOURCE, str(path), str(error))
        return
    owners = _credential_owners(inventory)
    for path in paths:
        found = linked = 0
        try:
            secrets = list(scan(path))
        except Exception as error:  # a missing path, the scanner's WorkspaceError: reported
            inventory.warn(SOURCE, str(path), f"secret scan failed: {error}")
            continue
        for secret in secrets:
            found += 1
            owner = owners.get(secret.identifier or "")
            if owner is not None:
                linked += 1
            inventory.findings.append(_finding(inventory, secret, owner))
        sources.append({"type": "secrets", "path": str(path), "secrets": found, "linked": linked})


def _credential_owners(inventory: Inventory) -> dict[str, Identity]:
    return {
        credential_id: identity
        for identity in inventory.identities.values()
        for credential_id in identity.credentials
    }


def _finding(inventory: Inventory, secret: LeakedSecret, owner: Identity | None) -> Finding:
    where = f"{secret.path}:{secret.line}" + (f" (commit {secret.commit})" if secret.commit else "")
    evidence = [f"{secret.rule_name} at {where}: {secret.redacted}"]
    if owner is not None:
        evidence.append(f"credential {secret.identifier} belongs to {owner.id}")
        credential = owner.credentials[secret.identifier or ""]
        severity = Severity.CRITICAL if credential.active else Severity.HIGH
        identity = owner
    else:
        identity = inventory.identity(
            f"leaked:{secret.fingerprint}",
            Kind.UNLINKED_SECRET,
            Provider.CODE,
            f"{secret.rule_name} in {secret.path}",
            SOURCE,
        )
        identity.facts["rule_id"] = secret.rule_id
        identity.facts["provider"] = secret.provider
        if secret.identifier:
            evidence.append(
                f"could not be linked: {secret.identifier} was not seen in CloudTrail "
                "(accessKeyId, CreateAccessKey) nor listed by ListAccessKeys; audit with "
                "--cloudtrail or --aws-live to link it"
            )
        else:
            evidence.append("could not be linked: this secret's format names no identity")
        severity = Severity.HIGH if secret.long_lived is False else Severity.CRITICAL
    info = CHECKS["NHI2-LEAKED-SECRET"]
    return Finding(
        check=info.id,
        owasp=info.owasp,
        severity=severity,
        identity=identity.id,
        title=info.title,
        evidence=tuple(evidence),
        remediation=info.remediation,
        details={
            "rule_id": secret.rule_id,
            "path": secret.path,
            "line": secret.line,
            "commit": secret.commit,
            "fingerprint": secret.fingerprint,
            "identifier": secret.identifier,
            "linked": owner is not None,
        },
    )
