"""Behavioural baselines per identity and anomaly detection on audit logs.

The public surface:

    from warden.behavior import DetectOptions, run_detect, render_table
    report = run_detect(DetectOptions(cloudtrail=[Path("logs/")], workspace=Path("ws")))
    render_table(report, console)

`report.to_json()` returns the versioned JSON document described in docs/detectors.md;
`DETECTORS` lists the detectors by id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warden.behavior.detect import DetectError, DetectOptions, DetectReport, run_detect
from warden.behavior.detectors import DETECTORS
from warden.behavior.model import Alert, Driver, Severity
from warden.behavior.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DETECTORS",
    "Alert",
    "DetectError",
    "DetectOptions",
    "DetectReport",
    "Driver",
    "Settings",
    "Severity",
    "render_table",
    "run_detect",
]


def render_table(report: DetectReport, console: Console, limit: int = 50) -> None:
    """Print the run's summary and alerts, non-human identities first, to a Rich console."""
    from warden.behavior.report import render_table as render

    render(report, console, limit)
