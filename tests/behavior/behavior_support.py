"""Shared helpers of the detection tests: event factories, label scoring, renaming.

Episodes written for the tests use accounts, names, addresses (RFC 5737 documentation
ranges and private ranges) and user agents that appear nowhere in the datasets, so that a
detector that passes them does not key on a dataset's values.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from warden.behavior import DetectOptions, DetectReport, Settings, run_detect

INVICTUS = "aws_cloudtrail/invictus_stratus_2023-07-10"
DETONATIONS = "aws_cloudtrail/stratus_red_team_detonation_logs"
LABELS = "labels/invictus_stratus_2023-07-10_labels.csv"
K8S_CSV = "k8s_audit/perfspec_kubernetes_event_dataset/audit-logs.csv"
FALCO = "k8s_audit/falco_trace_files"

# The invictus capture is an hour long, so a learning window of ten minutes is the one that
# lets the baseline detectors speak on it; the default week keeps them quiet there.
SHORT_LEARNING = Settings(learning_window=timedelta(minutes=10))

STEAL_ROLE = "stratus-red-team-ec2-steal-credentials-role"
OFF_INSTANCE_LABEL = "attack:instance_credentials_used_off_instance"


def detect(
    workspace: Path,
    cloudtrail: Iterable[Path] = (),
    k8s_audit: Iterable[Path] = (),
    settings: Settings | None = None,
    include_previous: bool = False,
    event_scores: bool = False,
    slice_rows: int = DetectOptions.slice_rows,
) -> DetectReport:
    return run_detect(
        DetectOptions(
            cloudtrail=list(cloudtrail),
            k8s_audit=list(k8s_audit),
            workspace=workspace,
            settings=settings or Settings(),
            include_previous=include_previous,
            event_scores=event_scores,
            slice_rows=slice_rows,
        )
    )


def every_alert(report: DetectReport) -> list[Any]:
    return report.alerts + report.human_alerts


def signature(report: DetectReport, rename=lambda text: text) -> set[tuple]:
    """What must not change when inputs are reordered, duplicated or renamed."""
    return {
        (a.detector, str(a.severity), rename(a.identity), a.human, tuple(sorted(a.event_ids)))
        for a in every_alert(report)
    }


# --- CloudTrail episodes ----------------------------------------------------------------


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    """A moment of the synthetic episodes: day 1 is 2025-03-03, a Monday."""
    return datetime(2025, 3, 2, hour, minute, second, tzinfo=UTC) + timedelta(days=day)


def role_session(account: str, role: str, session: str, key: str) -> dict[str, Any]:
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLE{abs(hash(role)) % 10**8:08d}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": f"AROAEXAMPLE{abs(hash(role)) % 10**8:08d}",
                "arn": f"arn:aws:iam::{account}:role/{role}",
                "accountId": account,
                "userName": role,
            },
            "attributes": {"creationDate": "2025-03-01T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }


def iam_user(account: str, user: str, key: str) -> dict[str, Any]:
    return {
        "type": "IAMUser",
        "principalId": f"AIDAEXAMPLE{abs(hash(user)) % 10**8:08d}",
        "arn": f"arn:aws:iam::{account}:user/{user}",
        "accountId": account,
        "accessKeyId": key,
        "userName": user,
    }


def cloudtrail_event(
    identity: dict[str, Any],
    when: datetime,
    action: str,
    *,
    address: str,
    agent: str,
    region: str = "eu-central-1",
    read_only: bool | None = None,
    error: str | None = None,
    request: dict[str, Any] | None = None,
    vpc_endpoint: str | None = None,
    invoked_by: str | None = None,
    console: bool = False,
    event_id: str | None = None,
) -> dict[str, Any]:
    service, name = action.split(":", 1)
    if read_only is None:
        read_only = name.startswith(("Get", "List", "Describe", "Head"))
    user_identity = dict(identity)
    if invoked_by:
        user_identity["invokedBy"] = invoked_by
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": user_identity,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": invoked_by or address,
        "userAgent": invoked_by or agent,
        "requestParameters": request,
        "responseElements": None,
        "eventID": event_id
        or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{when}{action}{identity}{address}{request}")),
        "readOnly": read_only,
        "eventType": "AwsConsoleSignIn" if name == "ConsoleLogin" else "AwsApiCall",
        "recipientAccountId": identity["accountId"],
    }
    if error:
        record["errorCode"] = error
    if vpc_endpoint:
        record["vpcEndpointId"] = vpc_endpoint
    if console:
        record["sessionCredentialFromConsole"] = "true"
    return record


def write_delivery(path: Path, records: list[dict[str, Any]], compress: bool = False) -> Path:
    """Write records as one CloudTrail delivery file, `{"Records": [...]}`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"Records": records}).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def routine(
    identity: dict[str, Any],
    days: Iterable[int],
    actions: list[str],
    *,
    address: str,
    agent: str,
    per_day: int = 3,
    hour: int = 10,
    region: str = "eu-central-1",
) -> list[dict[str, Any]]:
    """A workload's ordinary traffic: the same actions a few times a day."""
    records = []
    for day in days:
        for repeat in range(per_day):
            for index, action in enumerate(actions):
                when = at(day, hour, repeat * 10 + index % 10, index // 10)
                records.append(
                    cloudtrail_event(
                        identity, when, action, address=address, agent=agent, region=region
                    )
                )
    return records


# --- Kubernetes episodes ----------------------------------------------------------------


def k8s_event(
    username: str,
    when: datetime,
    verb: str,
    resource: str,
    *,
    namespace: str | None = "default",
    name: str | None = None,
    subresource: str | None = None,
    code: int = 200,
    request_object: dict[str, Any] | None = None,
    address: str = "10.244.1.17",
    agent: str = "controller/v0.0.0",
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if request_object else "Metadata",
        "auditID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{username}{when}{verb}{resource}{name}")),
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": username},
        "sourceIPs": [address],
        "userAgent": agent,
        "objectRef": {
            "resource": resource,
            "subresource": subresource,
            "namespace": namespace,
            "name": name,
        },
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if request_object is not None:
        event["requestObject"] = request_object
    return event


def write_lines(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


# Columns of the headless PerfSPEC CSV, in order, as the dataset's documentation lists them.
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


def k8s_capture(datasets_dir: Path, shift: timedelta = timedelta(0)) -> list[dict[str, Any]]:
    """The PerfSPEC CSV as audit.k8s.io/v1 events, optionally moved later by `shift`.

    A shifted copy gets new audit ids, so it is a second occurrence of the same traffic, not
    a duplicate delivery. Rows with the wrong number of fields (the cut-off last line) are
    skipped.
    """
    events = []
    with (datasets_dir / K8S_CSV).open(newline="", encoding="utf-8") as rows:
        for row in csv.reader(rows):
            if len(row) != len(K8S_CSV_COLUMNS):
                continue
            field = dict(zip(K8S_CSV_COLUMNS, row, strict=True))
            received = datetime.fromisoformat(
                field["requestReceivedTimestamp"].replace("Z", "+00:00")
            )
            audit_id = field["auditID"]
            if shift:
                audit_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{audit_id}+{shift}"))
            event = {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "auditID": audit_id,
                "stage": field["stage"],
                "verb": field["verb"],
                "user": {"username": field["user.username"]},
                "requestReceivedTimestamp": (received + shift).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "objectRef": {
                    "resource": field["objectRef.resource"] or None,
                    "subresource": field["objectRef.subresource"] or None,
                    "name": field["objectRef.name"] or None,
                },
            }
            if field["responseStatus.code"]:
                event["responseStatus"] = {"code": int(field["responseStatus.code"])}
            events.append(event)
    return events


# --- Labels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    flagged: int
    true_positives: int
    positives: int

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else 0.0


def load_labels(datasets_dir: Path) -> dict[str, str]:
    with (datasets_dir / LABELS).open(newline="") as rows:
        return {row["eventID"]: row["label"] for row in csv.DictReader(rows)}


def score_events(flagged: set[str], labels: dict[str, str]) -> Score:
    """Precision and recall over events, with the attack-labelled events as positives."""
    positives = {event for event, label in labels.items() if label.startswith("attack:")}
    return Score(len(flagged), len(flagged & positives), len(positives))


def flagged_by(report: DetectReport, detector: str | None = None, humans: bool = True) -> set[str]:
    alerts = every_alert(report) if humans else report.alerts
    return {
        event
        for alert in alerts
        if detector is None or alert.detector == detector
        for event in alert.event_ids
    }


def detonation_calls(datasets_dir: Path, labels: dict[str, str]) -> set[str]:
    """Attack-labelled events made by the attack tool itself, not by its Terraform set-up.

    The label file marks every event whose user agent carries the tool's suffix; Terraform
    runs that build and remove each technique's prerequisites carry it too.
    """
    calls = set()
    for path in sorted((datasets_dir / INVICTUS).glob("*.json")):
        for record in json.loads(path.read_text())["Records"]:
            label = labels.get(record["eventID"], "")
            agent = record.get("userAgent", "").lstrip("[")
            if label == OFF_INSTANCE_LABEL or (
                label.startswith("attack:") and agent.startswith("stratus-red-team")
            ):
                calls.add(record["eventID"])
    return calls


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(
    reports: dict[str, DetectReport], positives: set[str], labels: dict[str, str]
) -> list[str]:
    from warden.behavior import DETECTORS

    relabelled = {event: ("attack:" if event in positives else "other") for event in labels}
    header = "| detector |"
    rule = "|---|"
    for name in reports:
        header += f" {name}: events flagged | precision | recall |"
        rule += "---:|---:|---:|"
    lines = [header, rule]
    names = [*DETECTORS, "any rule or the learned detector"]
    for detector in names:
        row = f"| `{detector}` |" if detector in DETECTORS else f"| {detector} |"
        for report in reports.values():
            score = score_events(
                flagged_by(report, detector if detector in DETECTORS else None), relabelled
            )
            row += f" {score.flagged} | {_percent(score.precision)} | {_percent(score.recall)} |"
        lines.append(row)
    return lines


def _ranking(
    report: DetectReport, positives: set[str], labels: dict[str, str], threshold: float
) -> str:
    from sklearn.metrics import average_precision_score, roc_auc_score

    events = sorted(labels)
    truth = [1 if event in positives else 0 for event in events]
    scores = [report.event_scores.get(event, 0.0) for event in events]
    flagged = {event for event, score in zip(events, scores, strict=True) if score >= threshold}
    result = score_events(flagged, {e: ("attack:" if e in positives else "other") for e in events})
    return (
        f"ROC AUC {roc_auc_score(truth, scores):.2f}, average precision "
        f"{average_precision_score(truth, scores):.2f} (base rate {sum(truth) / len(truth):.0%}); "
        f"score >= {threshold}: {result.flagged} events, precision {_percent(result.precision)}, "
        f"recall {_percent(result.recall)}"
    )


def evaluation_markdown(
    default: DetectReport, short: DetectReport, labels: dict[str, str], calls: set[str]
) -> str:
    """The precision and recall tables of docs/detectors.md, computed from two runs."""
    attack = {event for event, label in labels.items() if label.startswith("attack:")}
    reports = {"window 7 days": default, "window 10 minutes": short}
    threshold = default.settings.anomaly_threshold
    nonhuman = []
    for name, report in reports.items():
        for positives, what in ((attack, "labels as given"), (calls, "attack tool's calls")):
            relabelled = {e: ("attack:" if e in positives else "other") for e in labels}
            result = score_events(flagged_by(report, humans=False), relabelled)
            nonhuman.append(
                f"- {name}, {what}: {result.flagged} events flagged, precision "
                f"{_percent(result.precision)}, recall {_percent(result.recall)}"
            )
    lines = [
        f"Positives as labelled ({len(attack):,} `attack:*` events of {len(labels):,}); alerts "
        "on human identities included:",
        "",
        *_table(reports, attack, labels),
        "",
        f"Positives restricted to the attack tool's own calls ({len(calls)} events, see the "
        "caveats):",
        "",
        *_table(reports, calls, labels),
        "",
        "Alerts on non-human identities alone (every detector together):",
        "",
        *nonhuman,
        "",
        "The learned score alone, over every event (10-minute window run):",
        "",
        f"- labels as given: {_ranking(short, attack, labels, threshold)}",
        f"- attack tool's calls: {_ranking(short, calls, labels, threshold)}",
    ]
    return "\n".join(lines)


REQUIRED_COVERAGE = (
    "aws.credential-access.ec2-get-password-data",
    "aws.credential-access.ec2-steal-instance-credentials",
    "aws.credential-access.secretsmanager-batch-retrieve-secrets",
    "aws.credential-access.secretsmanager-retrieve-secrets",
    "aws.credential-access.ssm-retrieve-securestring-parameters",
    "aws.defense-evasion.cloudtrail-delete",
    "aws.defense-evasion.cloudtrail-event-selectors",
    "aws.defense-evasion.cloudtrail-stop",
    "aws.persistence.iam-backdoor-role",
    "aws.persistence.iam-backdoor-user",
    "aws.persistence.iam-create-admin-user",
    "aws.persistence.iam-create-backdoor-role",
    "aws.persistence.iam-create-user-login-profile",
    "aws.persistence.sts-federation-token",
    "aws.privilege-escalation.iam-update-user-login-profile",
)


def coverage(report: DetectReport, datasets_dir: Path) -> dict[str, set[str]]:
    """Technique (file name) to the detectors with an alert on one of its events."""
    by_event: dict[str, set[str]] = {}
    for alert in every_alert(report):
        label = alert.detector + (" (human)" if alert.human else "")
        for event in alert.event_ids:
            by_event.setdefault(event, set()).add(label)
    result = {}
    for path in sorted((datasets_dir / DETONATIONS).glob("*.json")):
        detectors: set[str] = set()
        for record in json.loads(path.read_text()):
            detectors |= by_event.get(record["eventID"], set())
        result[path.name.removesuffix(".json")] = detectors
    return result


def coverage_markdown(report: DetectReport, datasets_dir: Path) -> str:
    table = coverage(report, datasets_dir)
    lines = ["| technique | detectors that fire |", "|---|---|"]
    for technique, detectors in table.items():
        names = ", ".join(f"`{d}`" for d in sorted(detectors)) or "**nothing**"
        lines.append(f"| `{technique}` | {names} |")
    missed = [technique for technique, detectors in table.items() if not detectors]
    lines += [
        "",
        f"Caught: {len(table) - len(missed)} of {len(table)}. Nothing fires on: "
        + ", ".join(f"`{t}`" for t in missed)
        + ".",
    ]
    return "\n".join(lines)


def _print_evaluation() -> None:
    """Print the tables for docs/detectors.md from fresh runs over the datasets."""
    import os
    import tempfile

    datasets = Path(
        os.environ.get(
            "WARDEN_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"
        )
    )
    labels = load_labels(datasets)
    with tempfile.TemporaryDirectory() as scratch:
        default = detect(Path(scratch) / "a", [datasets / INVICTUS], event_scores=True)
        short = detect(
            Path(scratch) / "b", [datasets / INVICTUS], settings=SHORT_LEARNING, event_scores=True
        )
        detonations = detect(Path(scratch) / "c", [datasets / DETONATIONS])
    print(evaluation_markdown(default, short, labels, detonation_calls(datasets, labels)))
    print()
    print(coverage_markdown(detonations, datasets))


# --- Renaming ---------------------------------------------------------------------------

ACCOUNT = re.compile(r"(?<!\d)\d{12}(?!\d)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
ARN = re.compile(
    r"arn:aws:(iam|sts)::(\d{12}):(user|role|assumed-role|policy|instance-profile)/([^\s\"']+)"
)
# Values AWS defines: they are kept, as they are in any account.
AWS_AGENTS = ("AWS Internal",)


class Renamer:
    """Renames every principal, account id, address and user agent consistently.

    Names are renamed word by word (words split on "-", "_", "/" and "."), so a name and a
    prefix of it stay related. Addresses keep their /24 grouping: each /24 network and each
    host number maps to a new one. User agents are renamed word by word too, except the
    `Mozilla` marker of browsers and AWS's own values, so two agents of one client family
    stay one family and two families stay two.
    """

    def __init__(self) -> None:
        self.words: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.networks: dict[str, str] = {}

    def word(self, word: str) -> str:
        if not word or word.isdigit():
            return word
        return self.words.setdefault(word, f"w{len(self.words) + 1:03d}x")

    def name(self, text: str) -> str:
        parts = re.split(r"([-_/.@:])", text)
        return "".join(p if p in "-_/.@:" or not p else self.word(p) for p in parts)

    def account(self, account: str) -> str:
        return self.accounts.setdefault(account, f"{700000000000 + len(self.accounts) * 7919:012d}")

    def address(self, address: str) -> str:
        match = IPV4.match(address)
        if not match:
            return address
        network = ".".join(match.group(1, 2, 3))
        renamed = self.networks.setdefault(
            network, f"10.{200 + len(self.networks) // 250}.{len(self.networks) % 250}"
        )
        return f"{renamed}.{(int(match.group(4)) * 7 + 3) % 256}"

    def agent(self, agent: str) -> str:
        if agent in AWS_AGENTS or agent.endswith(".amazonaws.com"):
            return agent
        # A run id (UUID) in a user agent becomes another UUID, so it stays a run id.
        runs = UUID.findall(agent)
        text = UUID.sub("\x00", agent)
        words = re.split(r"([^A-Za-z\x00]+)", text)
        text = "".join(
            w if not w or not w[0].isalpha() or w == "Mozilla" else self.word(w) for w in words
        )
        for run in runs:
            text = text.replace("\x00", str(uuid.uuid5(uuid.NAMESPACE_OID, run)), 1)
        return text

    def arn(self, match: re.Match[str]) -> str:
        service, account, kind, rest = match.groups()
        if kind == "assumed-role":
            role, _, session = rest.partition("/")
            # An instance id session name keeps its form: it is AWS's, not the organisation's.
            keep = re.fullmatch(r"i-[0-9a-fA-F]{8,17}", session)
            rest = f"{self.name(role)}/{session if keep else self.name(session)}"
        else:
            rest = "/".join(
                s if s.startswith("aws-") or s.endswith(".amazonaws.com") else self.name(s)
                for s in rest.split("/")
            )
        return f"arn:aws:{service}::{account}:{kind}/{rest}"

    def text(self, value: str) -> str:
        value = ACCOUNT.sub(lambda m: self.account(m.group(0)), value)
        return ARN.sub(self.arn, value)

    def identity(self, identity: str) -> str:
        return self.text(identity)

    def walk(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if key in ("eventID", "requestID", "sharedEventID"):
            return value
        if key == "userAgent":
            return self.agent(value)
        if key == "sourceIPAddress":
            return self.address(value)
        if key in ("userName", "roleName", "groupName", "policyName", "roleSessionName"):
            return self.name(value)
        return self.text(value)


if __name__ == "__main__":
    _print_evaluation()
