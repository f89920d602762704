"""SARIF, baseline, inline allowances, malformed files, the workspace key and the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from warden.scan import RULES, Keyring, scan_paths
from warden.scan import baseline as baseline_file
from warden.scan.sarif import to_sarif
from warden.scan.workspace import KEY_FILE


def _warden(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", "scan", *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "WARDEN_SCAN_HMAC_KEY": "ab" * 32},
    )


@pytest.fixture
def leaky(tmp_path, fake):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "app.env").write_text(
        f"GITHUB_TOKEN={fake.github()}\nDB_PASSWORD={fake.password()}\n"
    )
    return folder


def test_sarif_has_what_github_code_scanning_requires(leaky, keyring):
    result = scan_paths([leaky], keyring=keyring)
    document = to_sarif(result.findings, RULES)
    assert document["version"] == "2.1.0"
    assert document["$schema"].endswith("sarif-2.1.0.json")
    driver = document["runs"][0]["tool"]["driver"]
    assert driver["name"] == "Warden"
    rule_ids = [rule["id"] for rule in driver["rules"]]
    results = document["runs"][0]["results"]
    assert len(results) == 2
    for item in results:
        assert item["ruleId"] in rule_ids
        assert rule_ids[item["ruleIndex"]] == item["ruleId"]
        assert item["message"]["text"]
        location = item["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "app.env"
        assert location["region"]["startLine"] >= 1
        assert len(item["partialFingerprints"]["wardenSecretFingerprint/v1"]) == 32
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        assert float(rule["properties"]["security-severity"]) > 0


def test_sarif_passes_the_schema_when_available(leaky, keyring):
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).with_name("sarif-schema-2.1.0.json")
    if not schema_path.exists():
        pytest.skip("the SARIF 2.1.0 schema is not vendored beside this test")
    document = to_sarif(scan_paths([leaky], keyring=keyring).findings, RULES)
    jsonschema.validate(document, json.loads(schema_path.read_text()))


def test_fingerprint_survives_moving_lines(tmp_path, fake, keyring):
    token = fake.github()
    target = tmp_path / "settings.env"
    target.write_text(f"TOKEN={token}\n")
    before = scan_paths([target], keyring=keyring).findings[0]
    target.write_text("# a comment\n\nOTHER=1\n" + f"TOKEN={token}\n")
    after = scan_paths([target], keyring=keyring).findings[0]
    assert after.line == before.line + 3
    assert after.fingerprint == before.fingerprint


def test_baseline_accepts_known_findings_without_churn(leaky, keyring, tmp_path, fake):
    path = tmp_path / "baseline.json"
    first = scan_paths([leaky], keyring=keyring)
    baseline_file.write(path, baseline_file.Baseline.from_findings(first.findings, keyring.key_id))
    written = path.read_bytes()
    # Lines shift; the rewritten baseline is byte for byte the same.
    content = (leaky / "app.env").read_text()
    (leaky / "app.env").write_text("# moved\n" + content)
    second = scan_paths([leaky], keyring=keyring)
    baseline_file.write(path, baseline_file.Baseline.from_findings(second.findings, keyring.key_id))
    assert path.read_bytes() == written
    loaded = baseline_file.load(path, keyring.key_id)
    kept, accepted = baseline_file.filter_findings(second.findings, loaded)
    assert (kept, accepted) == ([], 2)
    # A new secret is not accepted.
    (leaky / "new.env").write_text(f"API_TOKEN={fake.github('gho')}\n")
    third = scan_paths([leaky], keyring=keyring)
    kept, _ = baseline_file.filter_findings(third.findings, loaded)
    assert [finding.rule_id for finding in kept] == ["github-oauth-token"]


def test_baseline_from_another_key_is_rejected(leaky, keyring, tmp_path):
    path = tmp_path / "baseline.json"
    findings = scan_paths([leaky], keyring=keyring).findings
    baseline_file.write(path, baseline_file.Baseline.from_findings(findings, keyring.key_id))
    other = Keyring(b"\x09" * 32)
    with pytest.raises(baseline_file.BaselineError, match="cannot match"):
        baseline_file.load(path, other.key_id)


def test_inline_allow_suppresses_a_finding(tmp_path, fake, keyring):
    target = tmp_path / "config.py"
    target.write_text(
        f'TOKEN = "{fake.github()}"  # warden:allow test fixture\n'
        f'# warden:allow\nOTHER = "{fake.github()}"\nKEPT = "{fake.github()}"\n'
    )
    result = scan_paths([target], keyring=keyring)
    assert [finding.line for finding in result.findings] == [4]
    assert result.stats.findings_suppressed_inline == 2


def test_malformed_files_raise_warnings(tmp_path, fake, keyring):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "image.bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(2048))
    token = fake.github()
    (folder / "latin1.env").write_bytes(b"NAME=caf\xe9\xff\nTOKEN=" + token.encode() + b"\n")
    (folder / "minified.js").write_text("var a=1;" * 20_000 + f'var t="{fake.github()}";')
    (folder / "broken.yaml").write_text("a: [unclosed\n  b: {\nkey: : :\npassword: Tr0ub4dor&3x\n")
    (folder / "empty.txt").write_text("")
    result = scan_paths([folder], keyring=keyring, max_file_size=10_000_000)
    codes = {(warning.code, warning.path) for warning in result.warnings}
    assert ("binary", "image.bin.txt") in codes
    assert ("invalid_utf8", "latin1.env") in codes
    assert ("long_line", "minified.js") in codes
    paths = {(finding.rule_id, finding.path) for finding in result.findings}
    assert ("github-pat", "latin1.env") in paths
    assert ("github-pat", "minified.js") in paths
    assert ("generic-password", "broken.yaml") in paths


def test_large_file_is_skipped_with_a_warning(tmp_path, keyring):
    (tmp_path / "dump.sql").write_text("x" * 5000)
    result = scan_paths([tmp_path], keyring=keyring, max_file_size=1000)
    assert [warning.code for warning in result.warnings] == ["too_large"]


def test_workspace_key_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv("WARDEN_SCAN_HMAC_KEY", raising=False)
    workspace = tmp_path / "state" / "warden"
    first = Keyring.load(workspace)
    assert stat.S_IMODE(workspace.stat().st_mode) == 0o700
    assert stat.S_IMODE((workspace / KEY_FILE).stat().st_mode) == 0o600
    assert Keyring.load(workspace).key == first.key


def test_workspace_defaults_to_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WARDEN_SCAN_HMAC_KEY", raising=False)
    monkeypatch.delenv("WARDEN_WORKSPACE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    Keyring.load()
    assert (tmp_path / "warden" / KEY_FILE).exists()


def test_hash_is_keyed(keyring):
    other = Keyring(b"\x07" * 32)
    assert keyring.secret_hash("hunter22") != other.secret_hash("hunter22")


def test_cli_exit_codes_and_json(leaky, tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "README.md").write_text("nothing here\n")
    assert _warden(str(clean)).returncode == 0
    completed = _warden(str(leaky), "--format", "json")
    assert completed.returncode == 1
    document = json.loads(completed.stdout)
    assert {finding["rule_id"] for finding in document["findings"]} == {
        "github-pat",
        "generic-password",
    }
    assert _warden(str(leaky), "--fail-on", "critical").returncode == 0
    assert _warden(str(leaky), "--fail-on", "none").returncode == 0
    missing = _warden(str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert "no such file or folder" in missing.stderr
    bad = _warden(str(leaky), "--fail-on", "urgent")
    assert bad.returncode == 2
    assert "invalid severity 'urgent'" in bad.stderr


def test_cli_baseline_round_trip(leaky, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert _warden(str(leaky), "--write-baseline", str(baseline)).returncode == 0
    assert _warden(str(leaky), "--baseline", str(baseline)).returncode == 0
    sarif = tmp_path / "out.sarif"
    assert _warden(str(leaky), "--format", "sarif", "--output", str(sarif)).returncode == 1
    assert json.loads(sarif.read_text())["version"] == "2.1.0"


def test_pre_commit_hook_definition_runs_warden_scan():
    hooks = Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml"
    yaml = pytest.importorskip("yaml")
    definitions = yaml.safe_load(hooks.read_text())
    hook = next(item for item in definitions if item["id"] == "warden-scan")
    assert hook["entry"].startswith("warden scan")
    assert hook["pass_filenames"] is True
