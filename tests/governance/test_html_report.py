"""The HTML report: self-contained, and sortable in a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from warden.governance import render_html, run_audit
from warden.governance.sample import sample_options

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("html") / "audit.html"
    path.write_text(render_html(run_audit(sample_options())), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = f"chromium not found at {CHROMIUM}; install Debian's chromium package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _run_chromium(chromium: str, profile: Path, *arguments: str) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _TableReader(HTMLParser):
    """Collects each table's attributes and the text of its body cells, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id"):
            self._table = attributes["id"]
            self.tables[self._table] = {"attributes": attributes, "rows": []}
        elif tag == "tbody" and self._table:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table]["rows"].append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(dom: str) -> dict[str, dict]:
    reader = _TableReader()
    reader.feed(dom)
    return reader.tables


def test_report_is_self_contained(report_file):
    text = report_file.read_text()
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text) is None
    assert "url(" not in text
    assert "<link" not in text
    assert "@import" not in text
    assert 'id="age-chart"' in text
    assert "<script>" in text


def test_report_states_as_of(report_file):
    assert '<b id="as-of">2024-06-01 00:00:00 UTC</b>' in report_file.read_text()


def test_sorting_in_chromium(report_file, chromium, tmp_path):
    url = report_file.as_uri()
    ascending = _tables(
        _run_chromium(
            chromium, tmp_path / "profile-asc", "--dump-dom", f"{url}#sort=identities:0:asc"
        )
    )
    descending = _tables(
        _run_chromium(
            chromium, tmp_path / "profile-desc", "--dump-dom", f"{url}#sort=identities:0:desc"
        )
    )

    assert ascending["identities"]["attributes"]["data-sorted"] == "0:asc"
    assert descending["identities"]["attributes"]["data-sorted"] == "0:desc"
    up = [int(row[0]) for row in ascending["identities"]["rows"]]
    down = [int(row[0]) for row in descending["identities"]["rows"]]
    assert up == sorted(up)
    assert down == sorted(up, reverse=True)
    assert up[0] < up[-1]


def test_sorting_text_column_in_chromium(report_file, chromium, tmp_path):
    dom = _run_chromium(
        chromium, tmp_path / "profile", "--dump-dom", f"{report_file.as_uri()}#sort=findings:1:asc"
    )
    checks = [row[1] for row in _tables(dom)["findings"]["rows"]]
    assert checks == sorted(checks, key=str.lower)
    assert len(checks) > 10


def test_screenshot_in_chromium(report_file, chromium, tmp_path):
    screenshot = tmp_path / "audit.png"
    _run_chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        "--window-size=1400,1800",
        f"{report_file.as_uri()}#sort=identities:0:desc",
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000
