"""docs/conformance.md names only tests that exist, and covers every area it lists."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "conformance.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/.-]+\.py)::([\w:]+)`")
#: Areas whose every rule must already name a test.
COMPLETE_AREAS = ("SPIFFE ID", "X509-SVID", "JWT-SVID", "Bundle")


@dataclass
class Row:
    area: str
    rule: str
    tests: list[tuple[str, str]]
    pending: bool


def _rows() -> list[Row]:
    rows: list[Row] = []
    area = ""
    for line in TABLE.read_text().splitlines():
        if line.startswith("## "):
            area = line[3:].strip()
            continue
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| rule |"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rule, test_cell = cells[0], cells[-1]
        tests = TEST_REFERENCE.findall(test_cell)
        rows.append(Row(area, rule, tests, pending="pending" in test_cell.lower() and not tests))
    return rows


def _defined_tests(path: Path) -> set[str]:
    """Return `name` and `Class::name` for every test function defined in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{member.name}")
    return names


def test_every_named_test_exists() -> None:
    rows = _rows()
    missing = []
    defined: dict[str, set[str]] = {}
    for row in rows:
        for path, name in row.tests:
            file = ROOT / path
            if not file.is_file():
                missing.append(f"{path}::{name} (no such file) for rule {row.rule!r}")
                continue
            names = defined.setdefault(path, _defined_tests(file))
            if name not in names:
                missing.append(f"{path}::{name} (no such test) for rule {row.rule!r}")

    pending = [row for row in rows if row.pending]
    named = {reference for row in rows for reference in row.tests}
    print(
        f"conformance: {len(rows)} rules, {len(rows) - len(pending)} with tests "
        f"({len(named)} distinct tests), {len(pending)} pending"
    )
    for row in pending:
        print(f"  pending [{row.area}] {row.rule}")

    assert missing == []


def test_every_row_names_a_test_or_is_pending() -> None:
    unclear = [row.rule for row in _rows() if not row.tests and not row.pending]

    assert unclear == []


@pytest.mark.parametrize("area", COMPLETE_AREAS)
def test_core_areas_have_no_pending_rules(area: str) -> None:
    rows = [row for row in _rows() if row.area == area]

    assert rows, f"docs/conformance.md has no section '## {area}'"
    assert [row.rule for row in rows if row.pending] == []
