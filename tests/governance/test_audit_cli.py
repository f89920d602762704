"""The `warden audit` command: formats, output files, exit codes for CI and input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from warden.governance.sample import sample_directory

SAMPLE = sample_directory()
SOURCES = [
    "--aws-authorization-details",
    str(SAMPLE / "aws" / "authorization-details.json"),
    "--aws-credential-report",
    str(SAMPLE / "aws" / "credential-report.csv"),
    "--cloudtrail",
    str(SAMPLE / "aws" / "cloudtrail"),
    "--k8s-objects",
    str(SAMPLE / "kubernetes" / "objects.json"),
    "--github",
    str(SAMPLE / "github"),
    "--as-of",
    "2024-06-01",
]


def warden(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_json_report_to_file(tmp_path):
    output = tmp_path / "report.json"
    result = warden("audit", *SOURCES, "--format", "json", "--output", str(output))
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())

    assert document["schema_version"] == "1"
    assert document["as_of"] == "2024-06-01T00:00:00Z"
    identity = document["identities"][0]
    for field in (
        "id",
        "kind",
        "provider",
        "name",
        "owner",
        "owner_source",
        "created_at",
        "last_used_at",
        "credentials",
        "risk",
    ):
        assert field in identity, field
    assert set(identity["risk"]) == {"score", "level", "reasons"}

    finding = document["findings"][0]
    assert set(finding) >= {
        "check",
        "owasp",
        "severity",
        "identity",
        "title",
        "evidence",
        "remediation",
    }
    ids = {i["id"] for i in document["identities"]}
    assert all(f["identity"] in ids for f in document["findings"])


def test_fail_on_sets_exit_code(tmp_path):
    failing = warden(
        "audit",
        *SOURCES,
        "--format",
        "json",
        "--output",
        str(tmp_path / "a.json"),
        "--fail-on",
        "critical",
    )
    assert failing.returncode == 1
    assert "at or above --fail-on critical" in failing.stderr
    only_k8s = warden(
        "audit",
        "--k8s-objects",
        str(SAMPLE / "kubernetes" / "objects.json"),
        "--ownership-map",
        str(SAMPLE / "ownership.yaml"),
        "--as-of",
        "2024-06-01",
        "--format",
        "json",
        "--output",
        str(tmp_path / "b.json"),
        "--fail-on",
        "critical",
    )
    assert only_k8s.returncode == 1  # the cluster-admin binding
    passing = warden(
        "audit",
        "--github",
        str(SAMPLE / "github" / "deploy-keys.json"),
        "--ownership-map",
        str(SAMPLE / "ownership.yaml"),
        "--as-of",
        "2021-10-01",
        "--format",
        "json",
        "--output",
        str(tmp_path / "c.json"),
        "--fail-on",
        "high",
    )
    assert passing.returncode == 0, passing.stderr


def test_table_and_html_formats(tmp_path):
    table = warden("audit", *SOURCES)
    assert table.returncode == 0, table.stderr
    assert "as of 2024-06-01 00:00:00Z" in table.stdout
    assert "NHI5-PRIVESC" in table.stdout
    html = tmp_path / "report.html"
    result = warden("audit", *SOURCES, "--format", "html", "--output", str(html))
    assert result.returncode == 0, result.stderr
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_invalid_suppressions_exit_two(tmp_path):
    bad = tmp_path / "suppressions.yaml"
    bad.write_text("- check: NHI1-DORMANT\n  identity: '*'\n  reason: no owner given\n")
    result = warden("audit", *SOURCES, "--suppressions", str(bad))
    assert result.returncode == 2
    assert "suppression 1 is missing accepted_by, expires" in result.stderr


def test_invalid_options_rejected():
    assert warden("audit").returncode == 2
    bad_severity = warden("audit", *SOURCES, "--fail-on", "severe")
    assert bad_severity.returncode == 2
    assert "invalid severity 'severe'" in bad_severity.stderr
    bad_time = warden("audit", *SOURCES, "--as-of", "yesterday")
    assert bad_time.returncode == 2
    assert "invalid time 'yesterday'" in bad_time.stderr


def test_workspace_is_reused(tmp_path):
    workspace = tmp_path / "workspace"
    first = warden(
        "audit",
        "--cloudtrail",
        str(SAMPLE / "aws" / "cloudtrail"),
        "--workspace",
        str(workspace),
        "--as-of",
        "2024-06-01",
        "--format",
        "json",
    )
    assert first.returncode == 0, first.stderr
    assert (workspace / "warden.duckdb").exists()
    # A later run with only the workspace still finds the earlier activity.
    again = warden(
        "audit", "--workspace", str(workspace), "--as-of", "2024-06-01", "--format", "json"
    )
    assert again.returncode == 0, again.stderr
    names = {i["name"] for i in json.loads(again.stdout)["identities"]}
    assert "ci-deployer" in names
    assert Path(workspace).is_dir()
