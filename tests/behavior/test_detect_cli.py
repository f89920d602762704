"""The `warden detect` command: formats, output files, exit codes and input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from behavior_support import at, cloudtrail_event, role_session, routine, write_delivery
from typer.testing import CliRunner

from warden.cli.main import app

ACCOUNT = "302918273645"
AGENT = "Boto3/1.34.2 md/Botocore#1.34.2 ua/2.0 os/linux#6.1"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def warden(*arguments: str) -> Result:
    """Run the command in this process, as the console script would."""
    result = CliRunner().invoke(app, list(arguments), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def warden_process(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _logs(tmp_path):
    """An instance session used from elsewhere on its last day."""
    session = role_session(ACCOUNT, "queue-consumer", "i-0fedcba9876543210", "ASIAEXAMPLECONSUME1")
    records = routine(
        session, range(1, 4), ["sqs:ReceiveMessage"], address="203.0.113.20", agent=AGENT
    )
    records.append(
        cloudtrail_event(
            session, at(4, 22), "sts:GetCallerIdentity", address="198.51.100.99", agent="curl/8.5.0"
        )
    )
    return write_delivery(tmp_path / "logs" / "trail.json", records)


def test_json_report_to_file(tmp_path):
    logs = _logs(tmp_path)
    output = tmp_path / "out" / "alerts.json"
    result = warden(
        "detect",
        "--cloudtrail",
        str(logs),
        "--workspace",
        str(tmp_path / "ws"),
        "--format",
        "json",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())

    assert document["schema_version"] == "1"
    assert document["summary"]["new_events"] == 10
    alert = document["alerts"][0]
    for field in (
        "detector",
        "severity",
        "identity",
        "credential",
        "event_ids",
        "first_event_time",
        "last_event_time",
        "techniques",
        "evidence",
        "baseline",
        "score",
        "drivers",
    ):
        assert field in alert, field
    assert alert["detector"] == "off-workload-credential"
    assert alert["severity"] == "critical"
    assert alert["first_event_time"].endswith("Z")
    assert document["human_alerts"] == []
    assert oct(output.stat().st_mode & 0o777) == "0o600"


def test_table_on_standard_output(tmp_path):
    result = warden_process("detect", "--cloudtrail", str(_logs(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "off-workload-credential" in result.stdout
    assert "critical" in result.stdout


def test_fail_on_severity(tmp_path):
    logs = _logs(tmp_path)
    failing = warden(
        "detect",
        "--cloudtrail",
        str(logs),
        "--workspace",
        str(tmp_path / "ws"),
        "--fail-on",
        "high",
    )
    assert failing.returncode == 1
    assert "at or above --fail-on high" in " ".join(failing.stderr.split())

    # Nothing new on the second run, so nothing to fail on; --all shows the earlier alert.
    again = warden(
        "detect",
        "--workspace",
        str(tmp_path / "ws"),
        "--fail-on",
        "high",
        "--all",
        "--format",
        "json",
    )
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert [a["status"] for a in document["alerts"]] == ["previous"]


def test_input_errors_exit_two(tmp_path):
    no_source = warden("detect")
    assert no_source.returncode == 2
    assert "no source given" in no_source.stderr

    empty = warden("detect", "--workspace", str(tmp_path / "nothing-here"))
    assert empty.returncode == 2
    assert "contains no warden.duckdb" in empty.stderr

    duration = warden("detect", "--cloudtrail", str(tmp_path), "--learning-window", "7x")
    assert duration.returncode == 2
    assert "days are written as 7d" in duration.stderr

    table = tmp_path / "networks.csv"
    table.write_text("not-a-network,lab\n")
    bad_table = warden("detect", "--cloudtrail", str(_logs(tmp_path)), "--networks", str(table))
    assert bad_table.returncode == 2
    assert "invalid network table line" in bad_table.stderr


def test_learning_window_option(tmp_path):
    result = warden(
        "detect",
        "--cloudtrail",
        str(_logs(tmp_path)),
        "--learning-window",
        "12h",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["settings"]["learning_window"] == 12 * 3600


def test_memory_limit_must_be_a_size(tmp_path):
    logs = _logs(tmp_path)
    workspace = tmp_path / "ws"

    rejected = warden(
        "detect", "--cloudtrail", str(logs), "--workspace", str(workspace),
        "--memory-limit", "1GB'; SET threads=1; --",
    )  # fmt: skip
    accepted = warden(
        "detect", "--cloudtrail", str(logs), "--workspace", str(workspace),
        "--memory-limit", "256MB", "--format", "json",
    )  # fmt: skip

    assert rejected.returncode == 2
    assert "is not a size" in rejected.stderr
    assert "512MB or 4GB" in rejected.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["summary"]["new_events"] == 10
