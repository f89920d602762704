"""Governance of non-human identities: inventory, owners, ghosts and risk checks.

The public surface:

    from warden.governance import AuditOptions, run_audit, render_table
    report = run_audit(AuditOptions(cloudtrail=[Path("logs/")]))
    render_table(report, console)

`report.to_json()` returns the versioned JSON document; `render_html(report)` returns the
self-contained HTML page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warden.governance.audit import AuditError, AuditOptions, AuditReport, run_audit
from warden.governance.checks import CHECKS, Thresholds
from warden.governance.model import Finding, Identity, Severity

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "CHECKS",
    "AuditError",
    "AuditOptions",
    "AuditReport",
    "Finding",
    "Identity",
    "Severity",
    "Thresholds",
    "render_html",
    "render_table",
    "run_audit",
]


def render_table(report: AuditReport, console: Console, limit: int = 25) -> None:
    """Print the report's summary, riskiest identities and findings to a Rich console."""
    from warden.governance.report_table import render_table as render

    render(report, console, limit)


def render_html(report: AuditReport) -> str:
    """Return the report as one self-contained HTML page (inline CSS, JS and SVG)."""
    from warden.governance.report_html import render_html as render

    return render(report)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'warden.governance' has no attribute {name!r}")
