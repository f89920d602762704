"""CloudTrail ingestion: file shapes, malformed input, incremental runs and duplicate deliveries."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from warden.governance import AuditOptions, run_audit
from warden.governance.sources import cloudtrail
from warden.governance.workspace import IngestStats, Workspace

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
ACCOUNT = "111122223333"


def event(
    number: int,
    user: str = "build-bot",
    key: str = "AKIAEXAMPLEKEY000001",
    *,
    time: str | None = None,
    name: str = "ListBuckets",
) -> dict:
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
            "accountId": ACCOUNT,
            "accessKeyId": key,
            "userName": user,
        },
        "eventTime": time or f"2024-02-01T10:{number // 60:02d}:{number % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0 Python/3.11",
        "requestParameters": None,
        "responseElements": None,
        "eventID": f"00000000-0000-4000-8000-{number:012d}",
        "readOnly": True,
        "recipientAccountId": ACCOUNT,
    }


def write_records(path: Path, events: list[dict], compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"Records": events}).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def audit(*roots: Path, workspace: Path | None = None):
    return run_audit(AuditOptions(cloudtrail=list(roots), as_of=AS_OF, workspace=workspace))


def user(report, name: str):
    return next(i for i in report.identities + report.humans if i.name == name)


def test_reads_every_delivery_shape(tmp_path):
    write_records(tmp_path / "a" / "b" / "delivery.json.gz", [event(1), event(2)], compress=True)
    (tmp_path / "array.json").write_text(json.dumps([event(3), event(4)], indent=2))
    lines = []
    for number in (5, 6):
        record = event(number)
        record["@timestamp"] = record.pop("eventTime")
        lines.append(json.dumps(record))
    (tmp_path / "pipeline.jsonl").write_text("\n".join(lines) + "\n")

    report = audit(tmp_path)

    identity = user(report, "build-bot")
    assert identity.facts["event_count"] == 6
    assert identity.first_used_at == datetime(2024, 2, 1, 10, 0, 1, tzinfo=UTC)
    assert identity.last_used_at == datetime(2024, 2, 1, 10, 0, 6, tzinfo=UTC)
    assert report.warnings == []


def test_truncated_file_keeps_earlier_events(tmp_path):
    whole = json.dumps({"Records": [event(1), event(2), event(3)]}, indent=1)
    cut = whole[: whole.index('"eventID": "00000000-0000-4000-8000-000000000003"')]
    (tmp_path / "truncated.json").write_text(cut)
    write_records(tmp_path / "fine.json", [event(10, user="other-bot", key="AKIAEXAMPLEKEY000002")])

    report = audit(tmp_path)

    assert user(report, "build-bot").facts["event_count"] == 2
    assert user(report, "other-bot").facts["event_count"] == 1
    problems = [w for w in report.warnings if w.path.endswith("truncated.json")]
    assert len(problems) == 1
    assert "truncated" in problems[0].message


def test_truncated_line_number_is_the_event_start(tmp_path):
    records = [event(n) for n in range(1, 4)]
    text = '{"Records": [\n' + ",\n".join(json.dumps(r) for r in records) + "\n]}"
    (tmp_path / "cut.json").write_text(text[: text.rindex('"eventID"')])

    report = audit(tmp_path)

    warning = next(w for w in report.warnings if w.path.endswith("cut.json"))
    assert warning.line == 4  # the third event starts on line 4
    assert user(report, "build-bot").facts["event_count"] == 2


def test_file_named_gz_but_plain(tmp_path):
    write_records(tmp_path / "plain.json.gz", [event(1)])
    report = audit(tmp_path)
    assert user(report, "build-bot").facts["event_count"] == 1
    warning = next(w for w in report.warnings if w.path.endswith("plain.json.gz"))
    assert warning.line == 1
    assert "not gzip" in warning.message


def test_damaged_gzip_is_reported(tmp_path):
    (tmp_path / "broken.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate")
    write_records(tmp_path / "good.json", [event(1)])
    report = audit(tmp_path)
    assert user(report, "build-bot").facts["event_count"] == 1
    warning = next(w for w in report.warnings if w.path.endswith("broken.json.gz"))
    assert warning.line == 1


def test_invalid_json_line_is_skipped(tmp_path):
    lines = [json.dumps(event(1)), "{not json", json.dumps(event(2))]
    (tmp_path / "export.jsonl").write_text("\n".join(lines) + "\n")
    report = audit(tmp_path)
    assert user(report, "build-bot").facts["event_count"] == 2
    warning = next(w for w in report.warnings if w.path.endswith("export.jsonl"))
    assert warning.line == 2


def test_event_without_user_identity(tmp_path):
    anonymous = event(2)
    del anonymous["userIdentity"]
    text = '{"Records": [\n' + ",\n".join(json.dumps(r) for r in (event(1), anonymous)) + "\n]}"
    (tmp_path / "mixed.json").write_text(text)
    report = audit(tmp_path)
    assert user(report, "build-bot").facts["event_count"] == 1
    warning = next(w for w in report.warnings if w.path.endswith("mixed.json"))
    assert warning.line == 3
    assert "no userIdentity" in warning.message


def test_second_run_reads_only_new_files(tmp_path):
    logs = tmp_path / "logs"
    workspace = tmp_path / "workspace"
    write_records(logs / "one.json", [event(1), event(2)])
    audit(logs, workspace=workspace)
    write_records(logs / "two.json", [event(3)])

    with Workspace(workspace) as opened:
        stats = IngestStats()
        cloudtrail.ingest(opened, [logs], stats)
    assert (stats.files_unchanged, stats.files_read, stats.events) == (1, 1, 1)

    report = audit(logs, workspace=workspace)
    assert user(report, "build-bot").facts["event_count"] == 3


def test_unchanged_file_is_not_opened(tmp_path):
    logs = tmp_path / "logs"
    workspace = tmp_path / "workspace"
    path = write_records(logs / "one.json", [event(1)])
    audit(logs, workspace=workspace)
    # Same size and mtime, different content: a run that reopened the file would see event 9.
    before = path.stat()
    path.write_text(path.read_text().replace("000000000001", "000000000009"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    with Workspace(workspace) as opened:
        stats = IngestStats()
        cloudtrail.ingest(opened, [logs], stats)
        ids = opened.connection.execute("SELECT event_id FROM events").fetchall()
    assert stats.files_unchanged == 1
    assert stats.files_read == 0
    assert ids == [("00000000-0000-4000-8000-000000000001",)]


def test_duplicate_delivery_counted_once(tmp_path):
    logs = tmp_path / "logs"
    write_records(logs / "2024/02/01/delivery.json", [event(1), event(2)])
    write_records(logs / "copy/delivery-again.json", [event(1), event(2)])
    # A different file whose events overlap the first: each event counts once.
    write_records(logs / "overlap.json", [event(2), event(3)])
    workspace = tmp_path / "workspace"

    report = audit(logs, workspace=workspace)

    assert user(report, "build-bot").facts["event_count"] == 3
    source = next(s for s in report.sources if s["type"] == "cloudtrail")
    assert source["files_duplicate"] == 1
    assert source["files_read"] == 2


def test_credential_report_missing_columns(tmp_path):
    report_path = tmp_path / "credential-report.csv"
    report_path.write_text(
        "user,arn,user_creation_time,password_enabled,access_key_1_active,access_key_1_last_rotated\n"
        f"deploy-bot,arn:aws:iam::{ACCOUNT}:user/deploy-bot,2023-01-01T00:00:00+00:00,false,true,"
        "2023-01-01T00:00:00+00:00\n"
        "broken-row-with-too-many,a,b,c,d,e,f,g\n"
    )
    write_records(tmp_path / "logs" / "one.json", [event(1)])

    report = run_audit(
        AuditOptions(
            aws_credential_reports=[report_path], cloudtrail=[tmp_path / "logs"], as_of=AS_OF
        )
    )

    bot = user(report, "deploy-bot")
    assert bot.credentials[f"arn:aws:iam::{ACCOUNT}:user/deploy-bot#access_key_1"].long_lived
    assert user(report, "build-bot").facts["event_count"] == 1
    columns = next(w for w in report.warnings if "missing columns" in w.message)
    assert columns.line == 1
    assert "mfa_active" in columns.message
    row = next(w for w in report.warnings if "wrong number of fields" in w.message)
    assert row.line == 3
    assert {f.check for f in report.findings if f.identity.endswith("deploy-bot")} >= {
        "NHI4-USER-ACCESS-KEY",
        "NHI7-OLD-SECRET",
    }


def test_credential_report_without_arn_column(tmp_path):
    report_path = tmp_path / "credential-report.csv"
    report_path.write_text("user,password_enabled\nsomeone,true\n")
    report = run_audit(AuditOptions(aws_credential_reports=[report_path], as_of=AS_OF))
    warning = report.warnings[0]
    assert warning.line == 1
    assert "missing required columns arn" in warning.message
    assert report.identities == []


def test_file_above_object_limit_is_streamed(tmp_path, monkeypatch):
    from warden.governance import workspace as workspace_module

    monkeypatch.setattr(workspace_module, "MAX_OBJECT_BYTES", 2048)
    write_records(tmp_path / "large.json", [event(n) for n in range(1, 40)])
    report = audit(tmp_path)
    assert user(report, "build-bot").facts["event_count"] == 39
    assert report.warnings == []
