"""The JSON report, schema version 1 (documented in docs/audit-report-schema.md)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from warden import __version__
from warden.governance.model import Credential, Finding, Identity, Severity

if TYPE_CHECKING:
    from warden.governance.audit import AuditReport

# Increased when a field is removed, renamed or changes meaning; new fields keep the version.
SCHEMA_VERSION = "1"


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        items = [_json_value(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set) else items
    return value


def credential_to_json(credential: Credential) -> dict[str, Any]:
    return {
        "id": credential.id,
        "type": credential.type,
        "created_at": _time(credential.created_at),
        "first_used_at": _time(credential.first_used_at),
        "last_used_at": _time(credential.last_used_at),
        "expires_at": _time(credential.expires_at),
        "long_lived": credential.long_lived,
        "active": credential.active,
        "event_count": credential.event_count,
        "source_addresses": list(credential.source_addresses),
        "user_agents": list(credential.user_agents),
    }


def identity_to_json(identity: Identity, report: AuditReport | None) -> dict[str, Any]:
    risk = report.risks.get(identity.id) if report else None
    return {
        "id": identity.id,
        "kind": str(identity.kind),
        "provider": str(identity.provider),
        "name": identity.name,
        "account": identity.account,
        "human": identity.human,
        "classification": identity.classification,
        "enabled": identity.enabled,
        "owner": identity.owner,
        "owner_source": identity.owner_source,
        "created_by": identity.created_by,
        "created_at": _time(identity.created_at),
        "first_used_at": _time(identity.first_used_at),
        "last_used_at": _time(identity.last_used_at),
        "sources": sorted(identity.sources),
        "credentials": [
            credential_to_json(c) for c in sorted(identity.credentials.values(), key=lambda c: c.id)
        ],
        "risk": {"score": risk.score, "level": risk.level, "reasons": list(risk.reasons)}
        if risk
        else None,
        "facts": _json_value(identity.facts),
    }


def finding_to_json(finding: Finding) -> dict[str, Any]:
    document = {
        "check": finding.check,
        "owasp": finding.owasp,
        "severity": str(finding.severity),
        "identity": finding.identity,
        "title": finding.title,
        "evidence": list(finding.evidence),
        "remediation": finding.remediation,
        "details": _json_value(finding.details),
    }
    if finding.suppressed_by is not None:
        document["suppressed_by"] = finding.suppressed_by
    return document


def report_to_json(report: AuditReport) -> dict[str, Any]:
    by_severity = {str(s): 0 for s in sorted(Severity, reverse=True)}
    for finding in report.findings:
        by_severity[str(finding.severity)] += 1
    by_check: dict[str, int] = {}
    for finding in report.findings:
        by_check[finding.check] = by_check.get(finding.check, 0) + 1
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "warden", "version": __version__},
        "as_of": _time(report.as_of),
        "generated_at": _time(report.generated_at),
        "summary": {
            "identities": len(report.identities),
            "humans": len(report.humans),
            "findings": len(report.findings),
            "suppressed_findings": len(report.suppressed),
            "findings_by_severity": by_severity,
            "findings_by_check": dict(sorted(by_check.items())),
            "max_severity": str(report.max_severity()) if report.findings else None,
            "warnings": len(report.warnings),
        },
        "sources": _json_value(report.sources),
        "identities": [identity_to_json(i, report) for i in report.identities],
        "humans": [identity_to_json(i, None) for i in report.humans],
        "findings": [finding_to_json(f) for f in report.findings],
        "suppressed_findings": [finding_to_json(f) for f in report.suppressed],
        "expired_suppressions": _json_value(report.expired_suppressions),
        "warnings": [
            {"source": w.source, "path": w.path, "line": w.line, "message": w.message}
            for w in report.warnings
        ],
    }
