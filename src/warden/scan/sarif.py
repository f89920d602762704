"""SARIF 2.1.0 output, shaped for GitHub code scanning.

GitHub requires `version`, `$schema`, `runs[].tool.driver` (with `name` and the `rules` that
results refer to), and per result `ruleId`, `message.text` and `locations` with a relative
`artifactLocation.uri` and a `region.startLine`. `partialFingerprints` lets GitHub follow an
alert across commits; Warden puts its own fingerprint there (keyed hash of secret and path,
no line), so an alert survives code moving around the secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from warden import __version__
from warden.scan.model import Finding, Severity
from warden.scan.rule import Rule

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub sorts alerts by this property: a CVSS-like score from 0.0 to 10.0.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "1.0",
}


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.name},
        "fullDescription": {"text": rule.description},
        "help": {
            "text": f"{rule.description}\n\nReplacement: {rule.replacement.summary}",
            "markdown": f"{rule.description}\n\n**Replacement:** {rule.replacement.summary}",
        },
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "tags": ["security", "secret", rule.kind, rule.provider],
            "security-severity": _SECURITY_SEVERITY[rule.severity],
            "precision": "high" if rule.tier >= 3 else "medium",
        },
    }


def _message(finding: Finding) -> str:
    lifetime = {True: "long-lived", False: "short-lived", None: "lifetime unknown"}[
        finding.long_lived
    ]
    subject = f" ({finding.identifier})" if finding.identifier else ""
    return (
        f"{finding.rule_name}{subject}, {lifetime}, secret {finding.redacted} "
        f"(HMAC {finding.secret_hash[:12]}). Replace it: {finding.replacement.summary}"
    )


def to_sarif(findings: Sequence[Finding], rules: Sequence[Rule]) -> dict[str, Any]:
    """Build a SARIF 2.1.0 log with one run; `rules` is the catalogue the findings refer to."""
    used = {finding.rule_id for finding in findings}
    descriptors = [rule for rule in rules if rule.id in used]
    index = {rule.id: position for position, rule in enumerate(descriptors)}
    results = []
    for finding in findings:
        location: dict[str, Any] = {
            "physicalLocation": {
                # A path is not a URI: `#`, `%`, `?` and spaces must be percent-encoded.
                "artifactLocation": {"uri": quote(finding.path), "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": finding.line, "startColumn": finding.column},
            }
        }
        properties: dict[str, Any] = {
            "kind": finding.kind,
            "provider": finding.provider,
            "longLived": finding.long_lived,
            "confidence": finding.confidence.label(),
            "severity": finding.severity.label(),
            "replacement": finding.replacement.id,
            "secretHash": finding.secret_hash,
        }
        if finding.identifier:
            properties["identifier"] = finding.identifier
        if finding.commit:
            properties["commit"] = finding.commit
        results.append(
            {
                "ruleId": finding.rule_id,
                "ruleIndex": index[finding.rule_id],
                "level": _LEVEL[finding.severity],
                "message": {"text": _message(finding)},
                "locations": [location],
                "partialFingerprints": {"wardenSecretFingerprint/v1": finding.fingerprint},
                "properties": properties,
            }
        )
    return {
        "version": "2.1.0",
        "$schema": SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "Warden",
                        "semanticVersion": __version__,
                        "version": __version__,
                        "rules": [_rule_descriptor(rule) for rule in descriptors],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The scanned root"}}},
                "results": results,
            }
        ],
    }
