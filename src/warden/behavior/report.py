"""The detect report as versioned JSON (docs/detectors.md) and as Rich tables."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from warden import __version__
from warden.governance.model import Severity

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from warden.behavior.detect import DetectReport
    from warden.behavior.model import Alert


def report_to_json(report: DetectReport) -> dict[str, Any]:
    from warden.behavior.detect import SCHEMA_VERSION

    batch = report.batch
    everything = report.alerts + report.human_alerts
    worst = report.max_severity()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "warden", "version": __version__},
        "generated_at": _time(report.generated_at),
        "workspace": report.workspace,
        "run": report.run,
        "settings": report.settings.to_json(),
        "summary": {
            "alerts": len(report.alerts),
            "human_alerts": len(report.human_alerts),
            "retracted_alerts": len(report.retracted),
            "alerts_by_severity": {
                str(severity): sum(1 for a in report.alerts if a.severity == severity)
                for severity in sorted(Severity, reverse=True)
            },
            "alerts_by_detector": dict(Counter(a.detector for a in everything)),
            "max_severity": None if worst is None else str(worst),
            "new_rows": batch.new_rows,
            "new_events": batch.new_events,
            "context_events": batch.context_events,
            "identities": batch.identities,
            "first_event_time": _time(batch.first_time),
            "last_event_time": _time(batch.last_time),
            "warnings": len(report.warnings),
        },
        "model": report.model,
        "sources": report.sources,
        "alerts": [alert.to_json() for alert in report.alerts],
        "human_alerts": [alert.to_json() for alert in report.human_alerts],
        "retracted_alerts": [retraction.to_json() for retraction in report.retracted],
        "warnings": [
            {
                "source": warning.source,
                "path": warning.path,
                "line": warning.line,
                "message": warning.message,
            }
            for warning in report.warnings
        ],
    }


def render_table(report: DetectReport, console: Console, limit: int = 50) -> None:
    """Print the run's summary and its alerts, non-human first, to a Rich console."""
    from rich.table import Table

    batch = report.batch
    console.print(
        f"[bold]warden detect[/bold], run {report.run}: {batch.new_events:,} new events "
        f"({batch.context_events:,} earlier events read again as context) from "
        f"{batch.identities:,} identities; {len(report.alerts)} alerts on non-human "
        f"identities, {len(report.human_alerts)} on human identities"
        + (f", {len(report.retracted)} retracted" if report.retracted else ""),
        highlight=False,
    )
    for title, alerts in (
        ("Alerts on non-human identities", report.alerts),
        ("Alerts on human identities (reported apart)", report.human_alerts),
    ):
        if not alerts:
            continue
        table = Table(title=title, header_style="bold", show_lines=True)
        for column in ("severity", "score", "detector", "identity", "events", "evidence"):
            table.add_column(column, overflow="fold")
        for alert in alerts[:limit]:
            table.add_row(*(_plain(cell) for cell in _row(alert)))
        console.print(table)
        if len(alerts) > limit:
            console.print(f"... {len(alerts) - limit} more; use --format json for all of them")
    if report.warnings:
        console.print(f"{len(report.warnings)} input warnings; --format json lists them")


def _row(alert: Alert) -> list[str]:
    evidence = list(alert.evidence)
    if alert.drivers:
        evidence.append(
            "score driven by "
            + ", ".join(f"{d.feature} {d.value:.2f} (+{d.contribution:.2f})" for d in alert.drivers)
        )
    when = _time(alert.first_event_time)
    return [
        str(alert.severity),
        "" if alert.score is None else f"{alert.score:.2f}",
        alert.detector,
        alert.identity + (f"\n{alert.credential}" if alert.credential else ""),
        f"{len(alert.event_ids)} from {when}",
        "\n".join(evidence),
    ]


# C0 and C1 control characters except the newline, and the Unicode format characters that
# reorder or hide text (bidirectional overrides and isolates, zero-width characters).
_HIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)


def _plain(text: str) -> Text:
    """Return `text` as a Rich cell that shows markup and control characters literally.

    Identity names and user agents come from the logs, so the caller chooses them. Markup
    such as `[/]` would raise MarkupError and print no table, and escape sequences would
    reach the terminal (clearing it, hiding text, writing the clipboard).
    """
    from rich.text import Text

    return Text(_HIDDEN.sub(lambda match: f"\\u{ord(match.group()):04x}", text))


def _time(moment: Any) -> str | None:
    from datetime import UTC

    if moment is None:
        return None
    return str(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
