"""`warden scan`: find static credentials in files, folders or git history."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.text import Text

    from warden.scan import ScanResult

# Exit codes for CI pipelines and pre-commit.
EXIT_FINDINGS = 1  # a finding at or above --fail-on
EXIT_INPUT = 2  # a path, option, baseline or key that cannot be used


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
    app.command("scan")(scan)


def _fail(message: str) -> None:
    typer.echo(f"warden scan: {message}", err=True)
    raise typer.Exit(EXIT_INPUT)


def _list_rules() -> None:
    from rich.console import Console
    from rich.table import Table

    from warden.scan import RULES

    table = Table(title=f"{len(RULES)} scan rules")
    for column in ("rule", "provider", "kind", "severity", "replacement"):
        table.add_column(column)
    for rule in RULES:
        table.add_row(rule.id, rule.provider, rule.kind, rule.severity.label(), rule.replacement.id)
    Console().print(table)


def _cell(value: str) -> Text:
    """Return a table cell that shows `value` as written.

    Paths, identifiers and redacted prefixes come from the scanned files, so Rich markup in
    them stays text, and control and format characters (terminal escapes, bidirectional
    overrides) are shown as escapes instead of acting on the terminal.
    """
    from rich.text import Text

    return Text(
        "".join(
            character if character.isprintable() else character.encode("unicode_escape").decode()
            for character in value
        )
    )


def _table(result: ScanResult, suppressed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    if result.findings:
        found = len(result.findings)
        title = f"{found} {'credential' if found == 1 else 'credentials'} found"
        table = Table(title=title, show_lines=False)
        for column in (
            "severity",
            "rule",
            "location",
            "secret",
            "lifetime",
            "identifier",
            "replace with",
        ):
            table.add_column(column, overflow="fold")
        for finding in result.findings:
            lifetime = {True: "long", False: "short", None: "?"}[finding.long_lived]
            location = f"{finding.path}:{finding.line}"
            if finding.commit:
                location += f" @{finding.commit[:10]}"
            table.add_row(
                finding.severity.label(),
                finding.rule_id,
                _cell(location),
                _cell(f"{finding.redacted} {finding.secret_hash[:8]}"),
                lifetime,
                _cell(finding.identifier or ""),
                finding.replacement.id,
            )
        console.print(table)
    else:
        console.print("No credentials found.")
    stats = result.stats
    summary = (
        f"{stats.files_scanned} files, {stats.blobs_scanned} blobs, "
        f"{stats.bytes_scanned / 1e6:.1f} MB scanned with {result.engine}"
    )
    if stats.commits:
        summary += f" across {stats.commits} commits"
    hidden = stats.findings_below_confidence
    extra = []
    if suppressed:
        extra.append(f"{suppressed} accepted by the baseline")
    if stats.findings_suppressed_inline:
        extra.append(f"{stats.findings_suppressed_inline} allowed inline (warden:allow)")
    if hidden:
        extra.append(f"{hidden} below the confidence threshold (see --min-confidence)")
    console.print(summary + (f"; {', '.join(extra)}" if extra else "") + ".")
    counts: dict[str, int] = {}
    for warning in result.warnings:
        counts[warning.code] = counts.get(warning.code, 0) + 1
    if counts:
        listed = ", ".join(f"{count} {code}" for code, count in sorted(counts.items()))
        console.print(f"Warnings: {listed} (use --format json for the list).", style="yellow")


def scan(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or folders to scan (default: the current folder)."),
    ] = None,
    git: Annotated[
        bool,
        typer.Option(
            "--git", help="Scan the full history of the git repository holding each path."
        ),
    ] = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", help="table for people, json for scripts, sarif for code scanning."
        ),
    ] = OutputFormat.table,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Accept the findings listed in this baseline file.")
    ] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option(help="Write every current finding to this baseline file (then exit 0)."),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            help="Exit 1 when a finding has this severity or higher: info, low, medium, high, critical or none."
        ),
    ] = "low",
    min_confidence: Annotated[
        str, typer.Option(help="Report findings of this confidence or higher: low, medium or high.")
    ] = "medium",
    workspace: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding the HMAC key (default $XDG_STATE_HOME/warden or ~/.local/state/warden)."
        ),
    ] = None,
    max_file_size: Annotated[
        int, typer.Option(min=1, help="Skip files (and blobs) larger than this many bytes.")
    ] = 20 * 1024 * 1024,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Run only this rule id. Repeatable.")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=0,
            help="Worker processes; 0 starts one per CPU for trees of 64 MB or more.",
        ),
    ] = 0,
    list_rules: Annotated[
        bool, typer.Option("--list-rules", help="List the rules and exit.")
    ] = False,
) -> None:
    """Find static credentials, tell long-lived from short-lived ones, and name their replacement.

    Secrets are never printed: findings show a short prefix and an HMAC keyed with the
    workspace's key. Exit status: 0 clean, 1 findings at or above --fail-on, 2 bad input.
    """
    if list_rules:
        _list_rules()
        return

    from warden.scan import GitError, WorkspaceError, scan_paths
    from warden.scan import baseline as baseline_file
    from warden.scan.model import Confidence, Severity
    from warden.scan.rules import RULES
    from warden.scan.sarif import to_sarif
    from warden.scan.workspace import Keyring

    try:
        confidence = Confidence.parse(min_confidence)
        threshold = None if fail_on.strip().lower() == "none" else Severity.parse(fail_on)
    except ValueError as error:
        _fail(str(error))
        return
    try:
        keyring = Keyring.load(workspace)
    except WorkspaceError as error:
        _fail(str(error))
        return
    try:
        result = scan_paths(
            paths or [Path(".")],
            git=git,
            keyring=keyring,
            min_confidence=confidence,
            max_file_size=max_file_size,
            rules=rule or None,
            jobs=jobs,
        )
    except (FileNotFoundError, GitError, ValueError) as error:
        _fail(str(error))
        return

    if write_baseline is not None:
        written = baseline_file.Baseline.from_findings(result.findings, keyring.key_id)
        try:
            baseline_file.write(write_baseline, written)
        except OSError as error:
            _fail(f"cannot write the baseline {write_baseline}: {error.strerror}")
            return
        entries, findings = len(written.entries), len(result.findings)
        counted = f"{entries} fingerprints" + (
            f" ({findings} findings)" if findings != entries else ""
        )
        typer.echo(f"wrote {counted} to the baseline {write_baseline}", err=True)
        return

    suppressed = 0
    if baseline is not None:
        try:
            accepted = baseline_file.load(baseline, keyring.key_id)
        except baseline_file.BaselineError as error:
            _fail(str(error))
            return
        result.findings, suppressed = baseline_file.filter_findings(result.findings, accepted)
        result.stats.findings_in_baseline = suppressed

    if output_format is OutputFormat.table and output is None:
        _table(result, suppressed)
    else:
        if output_format is OutputFormat.sarif:
            document = to_sarif(result.findings, RULES)
        else:
            document = result.to_dict()
        text = json.dumps(document, indent=2) + "\n"
        if output is None:
            sys.stdout.write(text)
        else:
            from warden.cli._files import write_private

            try:
                # Findings locate credentials: readable by the owner only.
                write_private(output, text.encode("utf-8"))
            except OSError as error:
                _fail(f"cannot write the report to {output}: {error.strerror}")

    if threshold is not None and any(finding.severity >= threshold for finding in result.findings):
        raise typer.Exit(EXIT_FINDINGS)
