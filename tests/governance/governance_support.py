"""Shared constants and helpers of the governance tests."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from warden.governance import AuditReport

AUTHORIZATION_DETAILS = (
    "aws_iam_authz_details/cloudsplaining_example_iam_vulnerable_authz_details.json"
)
INVICTUS = "aws_cloudtrail/invictus_stratus_2023-07-10"
DETONATIONS = "aws_cloudtrail/stratus_red_team_detonation_logs"
K8S_CSV = "k8s_audit/perfspec_kubernetes_event_dataset/audit-logs.csv"
FALCO = "k8s_audit/falco_trace_files"

# Columns of the headless PerfSPEC CSV, in order, as its dataset documentation lists them.
K8S_CSV_COLUMNS = (
    "host",
    "requestReceivedTimestamp",
    "user.username",
    "verb",
    "objectRef.resource",
    "objectRef.subresource",
    "objectRef.name",
    "responseObject.metadata.name",
    "requestURI",
    "auditID",
    "stage",
    "responseStatus.code",
    "responseObject.metadata.uid",
    "ownerReferences[0].uid",
    "details.uid",
)

# The IAM export was taken in March 2023; auditing as of a date soon after keeps ages small.
IAM_AS_OF = datetime(2023, 4, 1, tzinfo=UTC)
INVICTUS_AS_OF = datetime(2023, 7, 10, 13, 0, tzinfo=UTC)


def convert_k8s_csv(source: Path, target: Path) -> tuple[int, int]:
    """Write the CSV's rows as audit.k8s.io/v1 JSON lines; return (events written, rows skipped).

    The CSV's last line is cut off upstream, so rows with the wrong number of fields are
    skipped.
    """
    written = skipped = 0
    with (
        source.open(newline="", encoding="utf-8") as rows,
        target.open("w", encoding="utf-8") as out,
    ):
        for row in csv.reader(rows):
            if len(row) != len(K8S_CSV_COLUMNS):
                skipped += 1
                continue
            field = dict(zip(K8S_CSV_COLUMNS, row, strict=True))
            event = {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "auditID": field["auditID"],
                "stage": field["stage"],
                "requestURI": field["requestURI"],
                "verb": field["verb"],
                "user": {"username": field["user.username"]},
                "requestReceivedTimestamp": field["requestReceivedTimestamp"],
                "objectRef": {
                    "resource": field["objectRef.resource"] or None,
                    "subresource": field["objectRef.subresource"] or None,
                    "name": field["objectRef.name"] or None,
                },
                "responseStatus": {"code": int(field["responseStatus.code"])}
                if field["responseStatus.code"]
                else {},
            }
            out.write(json.dumps(event) + "\n")
            written += 1
    return written, skipped


def findings_by_name(report: AuditReport, check: str) -> dict[str, list]:
    """Findings of one check keyed by the identity's last ARN component (its name)."""
    result: dict[str, list] = {}
    for finding in report.findings:
        if finding.check == check:
            result.setdefault(finding.identity.rsplit("/", 1)[-1], []).append(finding)
    return result
