"""The baseline: findings a team has accepted, so that only new ones fail a build.

A baseline is a JSON file listing fingerprints (keyed hash of the secret and the path, see
`warden.scan.workspace`). It holds no line numbers or commits, so edits around a secret, a
rebase or a squash do not churn it, and it holds no secret: only the fingerprint, the rule,
the path and the redacted prefix, for people reviewing it. Entries are sorted and written
with a fixed layout, so rewriting an unchanged baseline produces the same bytes.

Fingerprints depend on the HMAC key, so a baseline records the key id it was written with;
a scan with another key cannot match it and says so.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warden.scan.model import Finding

FORMAT = "warden-scan-baseline"
VERSION = 1


class BaselineError(Exception):
    """The baseline file cannot be read or belongs to another key; the message says why."""


@dataclass(frozen=True)
class BaselineEntry:
    fingerprint: str
    rule_id: str
    path: str
    redacted: str

    def to_dict(self) -> dict[str, str]:
        return {
            "fingerprint": self.fingerprint,
            "rule_id": self.rule_id,
            "path": self.path,
            "redacted": self.redacted,
        }


@dataclass(frozen=True)
class Baseline:
    key_id: str
    entries: tuple[BaselineEntry, ...]

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(entry.fingerprint for entry in self.entries)

    @classmethod
    def from_findings(cls, findings: Iterable[Finding], key_id: str) -> Baseline:
        unique = {
            finding.fingerprint: BaselineEntry(
                finding.fingerprint, finding.rule_id, finding.path, finding.redacted
            )
            for finding in findings
        }
        entries = sorted(
            unique.values(), key=lambda entry: (entry.path, entry.rule_id, entry.fingerprint)
        )
        return cls(key_id, tuple(entries))

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "key_id": self.key_id,
            "findings": [entry.to_dict() for entry in self.entries],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load(path: Path, key_id: str) -> Baseline:
    """Read a baseline; raise BaselineError when it is invalid or was written with another key."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(
            f"baseline {path} not found; create it with --write-baseline {path}"
        ) from None
    except (OSError, ValueError) as error:
        raise BaselineError(f"baseline {path} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BaselineError(
            f"baseline {path}: not a Warden scan baseline (missing format {FORMAT!r})"
        )
    if document.get("version") != VERSION:
        raise BaselineError(
            f"baseline {path}: version {document.get('version')!r} is not supported"
        )
    if document.get("key_id") != key_id:
        raise BaselineError(
            f"baseline {path} was written with HMAC key {document.get('key_id')}, but this scan "
            f"uses key {key_id}: fingerprints cannot match. Share the key (the workspace's "
            "scan-hmac.key or WARDEN_SCAN_HMAC_KEY) or rewrite the baseline with --write-baseline."
        )
    items = document.get("findings", [])
    if not isinstance(items, list):
        raise BaselineError(f"baseline {path}: 'findings' is not a list")
    entries = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(name), str) for name in ("fingerprint", "rule_id", "path")
        ):
            raise BaselineError(
                f"baseline {path}: entry {position} is malformed; each entry needs the "
                "strings 'fingerprint', 'rule_id' and 'path'. Rewrite it with --write-baseline."
            )
        redacted = item.get("redacted")
        entries.append(
            BaselineEntry(
                item["fingerprint"],
                item["rule_id"],
                item["path"],
                redacted if isinstance(redacted, str) else "",
            )
        )
    return Baseline(key_id, tuple(entries))


def write(path: Path, baseline: Baseline) -> None:
    """Write a baseline atomically: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(baseline.to_json())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def filter_findings(findings: list[Finding], baseline: Baseline) -> tuple[list[Finding], int]:
    """Drop the findings the baseline accepts; return the rest and how many were dropped."""
    accepted = baseline.fingerprints
    kept = [finding for finding in findings if finding.fingerprint not in accepted]
    return kept, len(findings) - len(kept)
