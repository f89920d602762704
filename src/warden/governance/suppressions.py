"""Suppressions: accepted findings, with who accepted them, why and until when.

The file is YAML or JSON, a list of entries (or `{"suppressions": [...]}`):

    - check: NHI4-USER-ACCESS-KEY          # a check id, or * for every check
      identity: "arn:aws:iam::*:user/ci-*" # glob on the identity id
      accepted_by: alice@example.com
      reason: CI runner, migration to OIDC federation planned
      expires: 2026-06-30

A suppression applies until the end of its `expires` day (UTC) at the audit's as-of time.
An expired one stops applying and the report lists it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from warden.governance import jsonstream
from warden.governance.model import Finding
from warden.governance.owners import SCALAR_TYPES, load_yaml

REQUIRED_FIELDS = ("check", "identity", "accepted_by", "reason", "expires")


@dataclass(frozen=True)
class Suppression:
    check: str
    identity: str
    accepted_by: str
    reason: str
    expires: date

    def matches(self, finding: Finding) -> bool:
        return (self.check in ("*", finding.check)) and fnmatch.fnmatchcase(
            finding.identity, self.identity
        )

    def active_at(self, moment: datetime) -> bool:
        # Comparing dates, not the instant after the expiry day, also works for 9999-12-31.
        return moment.astimezone(UTC).date() <= self.expires

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "identity": self.identity,
            "accepted_by": self.accepted_by,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
        }


def load(path: Path) -> list[Suppression]:
    """Read suppressions; raise ValueError naming the file, entry and field that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
        document = jsonstream.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read suppressions: {error}") from error
    if isinstance(document, dict):
        if "suppressions" not in document:
            raise ValueError(
                f"{path}: expected a list of suppressions, or a mapping with the list under "
                "'suppressions'; start each entry with '- '"
            )
        document = document["suppressions"]
    if document is None:
        return []
    if not isinstance(document, list):
        raise ValueError(f"{path}: expected a list of suppressions")
    result: list[Suppression] = []
    for index, item in enumerate(document, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: suppression {index} is not a mapping")
        missing = [name for name in REQUIRED_FIELDS if not item.get(name)]
        if missing:
            raise ValueError(
                f"{path}: suppression {index} is missing {', '.join(missing)}; "
                "every suppression needs check, identity, accepted_by, reason "
                "and expires"
            )
        for name in REQUIRED_FIELDS:
            if not isinstance(item[name], SCALAR_TYPES):
                raise ValueError(
                    f"{path}: suppression {index} has a {type(item[name]).__name__} as {name}; "
                    "write it as text"
                )
        expires = item["expires"]
        if isinstance(expires, datetime):
            expires = expires.date()
        elif not isinstance(expires, date):
            try:
                expires = date.fromisoformat(str(expires))
            except ValueError:
                raise ValueError(
                    f"{path}: suppression {index} has invalid expires "
                    f"{item['expires']!r}; use YYYY-MM-DD"
                ) from None
        result.append(
            Suppression(
                str(item["check"]),
                str(item["identity"]),
                str(item["accepted_by"]),
                str(item["reason"]),
                expires,
            )
        )
    return result


def apply(
    findings: list[Finding], suppressions: list[Suppression], as_of: datetime
) -> tuple[list[Finding], list[Finding], list[dict[str, object]]]:
    """Split findings into active and suppressed; also return the expired suppressions that matched.

    An expired suppression is reported even when it matches nothing any more.
    """
    from dataclasses import replace

    active: list[Finding] = []
    suppressed: list[Finding] = []
    expired_hits: dict[Suppression, int] = {s: 0 for s in suppressions if not s.active_at(as_of)}
    for item in findings:
        applied = None
        for suppression in suppressions:
            if not suppression.matches(item):
                continue
            if suppression.active_at(as_of):
                applied = suppression
                break
            expired_hits[suppression] += 1
        if applied is None:
            active.append(item)
        else:
            suppressed.append(replace(item, suppressed_by=applied.as_dict()))
    expired = [
        {
            **s.as_dict(),
            "findings_matched": count,
            "message": f"suppression expired on {s.expires.isoformat()}; "
            "its findings are active again",
        }
        for s, count in expired_hits.items()
    ]
    return active, suppressed, expired
