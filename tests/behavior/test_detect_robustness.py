"""Order, duplicates, clock skew and run boundaries do not change the alerts."""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from behavior_support import (
    INVICTUS,
    SHORT_LEARNING,
    at,
    cloudtrail_event,
    detect,
    every_alert,
    k8s_event,
    role_session,
    routine,
    signature,
    write_delivery,
    write_lines,
)

from warden.behavior import detectors as detectors_module
from warden.behavior import store
from warden.governance.workspace import Workspace

pytestmark = pytest.mark.datasets


def _records(datasets_dir: Path) -> list[dict]:
    records = []
    for path in sorted((datasets_dir / INVICTUS).glob("*.json")):
        records.extend(json.loads(path.read_text())["Records"])
    return records


def _files(datasets_dir: Path) -> list[Path]:
    return sorted((datasets_dir / INVICTUS).glob("*.json"))


def test_shuffled_events_same_alerts(datasets_dir, tmp_path, invictus_short_report):
    records = _records(datasets_dir)
    random.Random(7).shuffle(records)
    folder = tmp_path / "shuffled"
    for index in range(13):
        chunk = records[index::13]
        chunk.reverse()
        write_delivery(folder / f"part-{index:02d}.json", chunk)

    short = detect(tmp_path / "workspace", [folder], settings=SHORT_LEARNING)
    assert signature(short) == signature(invictus_short_report)


def test_duplicate_deliveries_change_nothing(datasets_dir, tmp_path, invictus_report):
    folder = tmp_path / "deliveries"
    shutil.copytree(datasets_dir / INVICTUS, folder / "original")
    for path in _files(datasets_dir)[:10]:
        shutil.copy(path, folder / f"again-{path.name}")
    # A re-delivery that overlaps two files without being a copy of either.
    first, second = (json.loads(p.read_text())["Records"] for p in _files(datasets_dir)[3:5])
    write_delivery(folder / "overlap.json.gz", first[:5] + second[-5:], compress=True)

    report = detect(tmp_path / "workspace", [folder])
    assert report.batch.new_events == 2900
    assert report.batch.new_rows == 2910
    assert signature(report) == signature(invictus_report)


def test_second_run_reads_only_new_files(datasets_dir, tmp_path, invictus_short_report):
    files = _files(datasets_dir)
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir()
    late.mkdir()
    for index, path in enumerate(files):
        shutil.copy(path, (early if index < 30 else late) / path.name)
    workspace = tmp_path / "workspace"
    first = detect(workspace, [early], settings=SHORT_LEARNING)

    second = detect(workspace, [early, late], settings=SHORT_LEARNING, include_previous=True)
    sources = second.sources[0]
    assert sources["files_unchanged"] == 30
    assert sources["files_read"] == len(files) - 30
    assert first.batch.new_events + second.batch.new_events == 2900
    assert second.batch.context_events > 0
    assert signature(second) == signature(invictus_short_report)


def test_slices_match_one_pass(datasets_dir, tmp_path, invictus_short_report):
    """A backlog judged 1,000 rows at a time, in ingestion order, gives the same alerts."""
    report = detect(
        tmp_path / "workspace", [datasets_dir / INVICTUS], settings=SHORT_LEARNING, slice_rows=1000
    )
    assert report.batch.new_events == 2900
    assert report.batch.context_events > 0
    assert signature(report) == signature(invictus_short_report)


def test_late_files_judged_in_order(datasets_dir, tmp_path, invictus_short_report):
    """Every other file arrives one run late, with events older than the first run's."""
    files = _files(datasets_dir)
    on_time, late = tmp_path / "on-time", tmp_path / "late"
    on_time.mkdir()
    late.mkdir()
    for index, path in enumerate(files):
        shutil.copy(path, (on_time if index % 2 else late) / path.name)
    workspace = tmp_path / "workspace"
    first = detect(workspace, [on_time], settings=SHORT_LEARNING)
    final = detect(workspace, [on_time, late], settings=SHORT_LEARNING, include_previous=True)
    assert first.batch.new_events + final.batch.new_events == 2900
    assert signature(final) == signature(invictus_short_report)


def test_clock_skew_between_sources(tmp_path):
    """Kubernetes' clock runs 40 minutes behind AWS's, and its log arrives a run later."""
    account = "480912345678"
    worker = role_session(account, "orders-worker", "i-0a1b2c3d4e5f60718", "ASIAEXAMPLEWORKER01")
    records = routine(
        worker,
        range(1, 10),
        ["sqs:ReceiveMessage", "s3:GetObject"],
        address="203.0.113.45",
        agent="Boto3/1.34.2 md/Botocore#1.34.2",
    )
    records.append(
        cloudtrail_event(
            worker,
            at(10, 11),
            "sts:GetCallerIdentity",
            address="198.51.100.77",
            agent="aws-cli/2.15.30 Python/3.11.8",
        )
    )
    account_name = "system:serviceaccount:shop:checkout"

    def kubernetes(skew: timedelta) -> list[dict]:
        events = [
            k8s_event(account_name, at(day, 10, minute), "get", "configmaps", namespace="shop")
            for day in range(1, 10)
            for minute in range(0, 30, 3)
        ]
        events.append(
            k8s_event(
                account_name,
                at(10, 11),
                "create",
                "pods",
                subresource="exec",
                namespace="shop",
                name="checkout-0",
            )
        )
        # The same events, stamped by a clock that is `skew` off.
        for event in events:
            stamped = datetime.fromisoformat(
                event["requestReceivedTimestamp"].replace("Z", "+00:00")
            )
            event["requestReceivedTimestamp"] = (stamped + skew).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return events

    signatures = []
    for name, skew in (("aligned", timedelta(0)), ("skewed", timedelta(minutes=-40))):
        root = tmp_path / name
        cloudtrail = write_delivery(root / "cloudtrail" / "all.json", records)
        detect(root / "workspace", [cloudtrail])
        audit = write_lines(root / "k8s" / "audit.jsonl", kubernetes(skew))
        report = detect(root / "workspace", [cloudtrail], [audit], include_previous=True)
        signatures.append(signature(report))
        assert {a.detector for a in every_alert(report)} == {
            "off-workload-credential",
            "k8s-sensitive-first-use",
        }
    assert signatures[0] == signatures[1]


def test_failed_run_changes_nothing(datasets_dir, tmp_path, monkeypatch, invictus_report):
    class Broken:
        id = "broken"
        title = "fails on purpose"
        techniques = ()
        humans = False
        learning = False

        def find(self, run):
            raise RuntimeError("detector failed")

    workspace = tmp_path / "workspace"
    broken = {**detectors_module.DETECTORS, "broken": Broken()}
    monkeypatch.setattr(detectors_module, "DETECTORS", broken)
    with pytest.raises(RuntimeError, match="detector failed"):
        detect(workspace, [datasets_dir / INVICTUS])
    with Workspace(workspace) as opened:
        store.ensure_schema(opened.connection)
        assert store.get_meta(opened.connection, "activity_rowid") is None
        assert opened.connection.execute("SELECT count(*) FROM behavior_profile").fetchone() == (0,)

    monkeypatch.undo()
    report = detect(workspace, [datasets_dir / INVICTUS])
    assert report.batch.new_events == 2900
    assert signature(report) == signature(invictus_report)
