"""The terminal summary: counts, the riskiest identities, findings and input warnings."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from warden.governance.model import Severity

if TYPE_CHECKING:
    from rich.console import Console

    from warden.governance.audit import AuditReport

SEVERITY_STYLES = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
# C0 and C1 control characters other than tab and newline: ESC starts terminal sequences
# that can clear the screen, write the clipboard or hide a link, so none reaches the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(value: object) -> Text:
    """Return input text as a Rich Text: markup such as `[bold]` shows as typed."""
    return Text(_CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value)))


LEVEL_STYLES = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "none": "dim",
}


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def render_table(report: AuditReport, console: Console, limit: int = 25) -> None:
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M:%SZ")
    console.print(
        f"[bold]Warden audit[/bold] as of {as_of}: "
        f"{_count(len(report.identities), 'non-human identity', 'non-human identities')}, "
        f"{_count(len(report.humans), 'human identity', 'human identities')} listed apart, "
        f"{_count(len(report.findings), 'finding', 'findings')}"
        + (f" ({len(report.suppressed)} suppressed)" if report.suppressed else "")
    )

    counts = Table(title="Findings by severity", show_header=True, header_style="bold")
    for severity in sorted(Severity, reverse=True):
        counts.add_column(str(severity), justify="right")
    counts.add_row(
        *[
            Text(str(sum(1 for f in report.findings if f.severity == s)), style=SEVERITY_STYLES[s])
            for s in sorted(Severity, reverse=True)
        ]
    )
    console.print(counts)

    identities = Table(title=f"Riskiest non-human identities (top {limit})", header_style="bold")
    for column in ("risk", "identity", "kind", "owner", "last used", "top reason"):
        identities.add_column(column, overflow="fold")
    for identity in report.identities[:limit]:
        risk = report.risks[identity.id]
        last_used = identity.last_used_at.strftime("%Y-%m-%d") if identity.last_used_at else "never"
        identities.add_row(
            Text(f"{risk.score} {risk.level}", style=LEVEL_STYLES[risk.level]),
            _plain(identity.id),
            _plain(identity.kind),
            _plain(identity.owner) if identity.owner else Text("unknown", style="red"),
            last_used,
            _plain(risk.reasons[0] if risk.reasons else ""),
        )
    console.print(identities)

    findings = Table(
        title=f"Findings (first {limit} of {len(report.findings)})", header_style="bold"
    )
    for column in ("severity", "check", "identity", "title"):
        findings.add_column(column, overflow="fold")
    for item in report.findings[:limit]:
        findings.add_row(
            Text(str(item.severity), style=SEVERITY_STYLES[item.severity]),
            _plain(item.check),
            _plain(item.identity),
            _plain(item.title),
        )
    console.print(findings)

    for expired in report.expired_suppressions:
        console.print(
            Text("expired suppression ", style="yellow")
            + _plain(f"{expired['check']} on {expired['identity']}: {expired['message']}")
        )
    if report.warnings:
        console.print(
            f"[yellow]{len(report.warnings)} input warnings[/yellow] (the audit read the rest):"
        )
        for warning in report.warnings[:limit]:
            console.print(_plain(f"  {warning}"), highlight=False)
