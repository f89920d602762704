"""Value types of the scanner's results: findings, warnings and the scan result.

A `Finding` never holds the secret itself: only a redacted prefix, a keyed hash (HMAC) and a
fingerprint derived from that hash and the path. Everything here is safe to print, log and
store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How bad a leak of this credential is, ordered so that `>=` compares."""

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
            raise ValueError(f"invalid severity {text!r}; expected one of {names}") from None

    def label(self) -> str:
        return self.name.lower()


class Confidence(enum.IntEnum):
    """How sure the scanner is that the match is a working credential.

    HIGH: validated offline (checksum, parsed key, decoded token) or a distinctive format.
    MEDIUM: the format or the key name fits, with nothing that could validate it.
    LOW: a format whose checksum fails (an edited or made-up token), or a generic match in a
    test or fixture file.
    """

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, text: str) -> Confidence:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(member.name.lower() for member in cls)
            raise ValueError(f"invalid confidence {text!r}; expected one of {names}") from None

    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Replacement:
    """The short-lived credential that should replace a static one.

    `id` is stable and machine-readable (`warden-oidc-federation`, `warden-database-lease`,
    ...); `summary` tells a person what to do.
    """

    id: str
    summary: str


@dataclass(frozen=True)
class Finding:
    """One leaked credential at one place.

    `path` is POSIX and relative to the root that was scanned: the git work tree when the
    scanned path lies in one, else the scanned folder. `commit` is set for history scans:
    the oldest commit that introduced the blob. `identifier` is a non-secret name of the
    credential when the format has one: an AWS access key id, a token's type, a JWT's
    `iss`/`sub`. `details` holds further non-secret facts read offline (a JWT's expiry, the
    AWS account id encoded in a key id, a registry host).
    """

    rule_id: str
    rule_name: str
    kind: str
    provider: str
    long_lived: bool | None
    path: str
    line: int
    column: int
    redacted: str
    secret_hash: str
    fingerprint: str
    confidence: Confidence
    severity: Severity
    replacement: Replacement
    identifier: str | None = None
    commit: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "kind": self.kind,
            "provider": self.provider,
            "long_lived": self.long_lived,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "commit": self.commit,
            "redacted": self.redacted,
            "secret_hash": self.secret_hash,
            "fingerprint": self.fingerprint,
            "confidence": self.confidence.label(),
            "severity": self.severity.label(),
            "replacement": {"id": self.replacement.id, "summary": self.replacement.summary},
            "identifier": self.identifier,
            "details": dict(sorted(self.details.items())),
        }


@dataclass(frozen=True)
class ScanWarning:
    """A file that was skipped or read only in part, and why.

    `code` is one of: `binary`, `too_large`, `long_line`, `invalid_utf8`, `parse_error`,
    `unreadable`, `git_error`, `engine`.
    """

    code: str
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass
class ScanStats:
    """Counts of what a scan read; `bytes_scanned` counts only the content that was scanned."""

    files_scanned: int = 0
    bytes_scanned: int = 0
    files_skipped: int = 0
    blobs_scanned: int = 0
    commits: int = 0
    findings_suppressed_inline: int = 0
    findings_below_confidence: int = 0
    findings_in_baseline: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class ScanResult:
    """Findings of one scan, sorted by path, line and rule, with the warnings it raised."""

    findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    engine: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [finding.to_dict() for finding in self.findings],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "stats": self.stats.to_dict(),
            "engine": self.engine,
        }
