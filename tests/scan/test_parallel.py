"""Worker processes: a parallel scan reports exactly what a serial one does, and a pool that
breaks finishes the scan in the calling process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from warden.scan import parallel, scan_paths
from warden.scan.model import Confidence

from .conftest import commit_all, git, init_repository


def _project(tmp_path, fake):
    repository = init_repository(tmp_path / "repo")
    for number in range(12):
        folder = repository / f"service{number}"
        folder.mkdir()
        (folder / "settings.env").write_text(
            f"GITHUB_TOKEN={fake.github()}\nDB_PASSWORD={fake.password()}\n"
        )
        (folder / "notes.txt").write_text("nothing to see here\n" * 50)
    commit_all(repository, "Add services")
    (repository / "service0" / "settings.env").unlink()
    (repository / "service1" / "binary.dat").write_bytes(b"\0" * 64)
    commit_all(repository, "Remove a service's settings")
    git(repository, "rm", "-q", "-r", "service2")
    commit_all(repository, "Remove a service")
    return repository


def _summary(result):
    findings = [
        (finding.path, finding.line, finding.rule_id, finding.fingerprint, finding.commit)
        for finding in result.findings
    ]
    warnings = sorted((warning.code, warning.path) for warning in result.warnings)
    stats = result.stats.to_dict()
    return findings, warnings, stats


@pytest.fixture
def small_batches(monkeypatch):
    # Several batches even for a small tree, so that both workers get some.
    monkeypatch.setattr(parallel, "BATCH_BYTES", 256)


@pytest.mark.parametrize("history", [False, True], ids=["files", "history"])
def test_parallel_scan_matches_serial(tmp_path, fake, keyring, small_batches, history):
    repository = _project(tmp_path, fake)
    serial = scan_paths([repository], git=history, keyring=keyring, jobs=1)
    both = scan_paths([repository], git=history, keyring=keyring, jobs=2)
    assert len(serial.findings) >= 20
    assert _summary(both) == _summary(serial)


def test_broken_pool_finishes_in_this_process(tmp_path, fake, keyring, small_batches, monkeypatch):
    def fail(settings: parallel.WorkerSettings) -> None:
        raise RuntimeError("worker cannot start")

    monkeypatch.setattr(parallel, "_start_method", lambda: "fork")
    monkeypatch.setattr(parallel, "_start_worker", fail)
    repository = _project(tmp_path, fake)
    serial = scan_paths([repository], keyring=keyring, jobs=1)
    broken = scan_paths([repository], keyring=keyring, jobs=2)
    assert [f.fingerprint for f in broken.findings] == [f.fingerprint for f in serial.findings]
    assert [w.code for w in broken.warnings if w.code == "engine"] == ["engine"]


def test_workers_keep_the_minimum_confidence_and_rules(tmp_path, fake, keyring, small_batches):
    repository = _project(tmp_path, fake)
    result = scan_paths(
        [repository],
        keyring=keyring,
        jobs=2,
        rules=["github-pat"],
        min_confidence=Confidence.HIGH,
    )
    assert {finding.rule_id for finding in result.findings} == {"github-pat"}
    assert all(finding.confidence is Confidence.HIGH for finding in result.findings)


@pytest.mark.parametrize(
    ("jobs", "total", "expected"),
    [
        (1, 10**9, 1),
        (3, 10**9, 3),
        (4, parallel.BATCH_BYTES, 1),
        (0, parallel.PARALLEL_BYTES - 1, 1),
    ],
)
def test_worker_count(jobs, total, expected):
    assert parallel.worker_count(jobs, total) == expected


def test_worker_count_automatic_uses_every_cpu(monkeypatch):
    monkeypatch.setattr(parallel, "available_cpus", lambda: 6)
    assert parallel.worker_count(0, parallel.PARALLEL_BYTES) == 6


def test_worker_count_rejects_negative_jobs():
    with pytest.raises(ValueError, match="invalid number of jobs -1"):
        parallel.worker_count(-1, 0)


def _warden(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", "scan", *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WARDEN_SCAN_HMAC_KEY": "ab" * 32},
    )


def test_cli_jobs_option(tmp_path, fake):
    repository = _project(tmp_path, fake)
    serial = _warden(str(repository), "--format", "json", "--jobs", "1")
    workers = _warden(str(repository), "--format", "json", "--jobs", "2")
    assert serial.returncode == 1, serial.stderr
    assert workers.returncode == 1, workers.stderr
    assert json.loads(workers.stdout)["findings"] == json.loads(serial.stdout)["findings"]


def test_cli_rejects_negative_jobs(tmp_path):
    completed = _warden(str(tmp_path), "--jobs", "-1")
    assert completed.returncode == 2
    assert "--jobs" in completed.stderr
