"""Renaming every principal, account, address and user agent gives the same alerts.

This proves that no detector keys on a name, account, address or client of the datasets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from behavior_support import (
    DETONATIONS,
    INVICTUS,
    SHORT_LEARNING,
    Renamer,
    detect,
    k8s_capture,
    signature,
)

pytestmark = pytest.mark.datasets

PRODUCT = Path(__file__).resolve().parents[2] / "src" / "warden"
# Resource types of AWS's ARN syntax, the same in every account.
ARN_KEYWORDS = {"assumed-role", "federated-user"}


@pytest.fixture(scope="module")
def renamed(datasets_dir, tmp_path_factory):
    renamer = Renamer()
    root = tmp_path_factory.mktemp("renamed")
    for path in sorted((datasets_dir / INVICTUS).glob("*.json")):
        document = json.loads(path.read_text())
        (root / path.name).write_text(json.dumps(renamer.walk(document)))
    return renamer, root


def test_renaming_changed_the_inputs(renamed, datasets_dir):
    renamer, root = renamed
    path = next((datasets_dir / INVICTUS).glob("*.json"))
    before = json.loads(path.read_text())["Records"][0]
    after = json.loads((root / path.name).read_text())["Records"][0]
    assert after["eventID"] == before["eventID"]
    for field in ("accountId", "arn", "userName"):
        assert after["userIdentity"][field] != before["userIdentity"][field], field
    assert after["sourceIPAddress"] != before["sourceIPAddress"]
    assert len(renamer.accounts) >= 1
    assert len(renamer.networks) >= 3
    assert len(renamer.words) >= 20


def test_same_alerts_after_renaming(renamed, invictus_short_report):
    renamer, root = renamed
    report = detect(root.parent / "workspace", [root], settings=SHORT_LEARNING)
    assert signature(report) == signature(invictus_short_report, renamer.identity)
    assert report.alerts[0].detector == "off-workload-credential"


def _dataset_values(datasets_dir: Path) -> set[str]:
    values: set[str] = set()
    records = []
    for path in (datasets_dir / INVICTUS).glob("*.json"):
        records += json.loads(path.read_text())["Records"]
    for path in (datasets_dir / DETONATIONS).glob("*.json"):
        records += json.loads(path.read_text())
    for record in records:
        identity = record.get("userIdentity") or {}
        for field in ("userName", "accountId"):
            if identity.get(field):
                values.add(identity[field])
        arn = identity.get("arn", "")
        values.update(
            part for part in re.split(r"[:/]", arn) if "-" in part and part not in ARN_KEYWORDS
        )
        address = record.get("sourceIPAddress", "")
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", address):
            values.add(address)
        agent = record.get("userAgent", "")
        if agent and agent != "AWS Internal" and not agent.endswith(".amazonaws.com"):
            values.add(agent)
    for event in k8s_capture(datasets_dir):
        values.add(event["user"]["username"])
    return {value for value in values if len(value) >= 5}


def test_product_names_no_dataset_values(datasets_dir):
    values = _dataset_values(datasets_dir)
    assert len(values) > 50
    sources = [
        *PRODUCT.joinpath("behavior").rglob("*.py"),
        PRODUCT / "cli" / "detect.py",
        PRODUCT / "cli" / "_sources.py",
    ]
    leaks = {
        (path.name, value) for path in sources for value in values if value in path.read_text()
    }
    assert leaks == set()
