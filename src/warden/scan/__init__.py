"""The static credential scanner: find long-lived secrets in files and git history, redact
them, and name the short-lived credential that replaces each one.

    from warden.scan import scan_paths
    result = scan_paths(["."], git=False)
    for finding in result.findings:
        print(finding.rule_id, finding.path, finding.line, finding.identifier)

Findings never contain a secret: only a redacted prefix, an HMAC of the secret keyed with the
workspace's key, and a fingerprint (see `warden.scan.workspace`).
"""

from __future__ import annotations

from warden.scan.gitsource import GitError
from warden.scan.model import (
    Confidence,
    Finding,
    Replacement,
    ScanResult,
    ScanStats,
    ScanWarning,
    Severity,
)
from warden.scan.rule import Rule
from warden.scan.rules import RULES, rule
from warden.scan.scanner import Scanner, scan_paths, scan_text
from warden.scan.workspace import Keyring, WorkspaceError, default_workspace

__all__ = [
    "RULES",
    "Confidence",
    "Finding",
    "GitError",
    "Keyring",
    "Replacement",
    "Rule",
    "ScanResult",
    "ScanStats",
    "ScanWarning",
    "Scanner",
    "Severity",
    "WorkspaceError",
    "default_workspace",
    "rule",
    "scan_paths",
    "scan_text",
]
