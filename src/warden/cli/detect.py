"""`warden detect`: behavioural baselines per identity, and alerts on what breaks them."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from warden.cli._sources import (
    SOURCE_FLAGS,
    AuthorizationDetailsOption,
    AwsLiveOption,
    CloudTrailOption,
    CredentialReportOption,
    GitHubOption,
    KubernetesAuditOption,
    KubernetesObjectsOption,
    LogProgress,
    SecretsOption,
    WardenDatastoreOption,
)

if TYPE_CHECKING:
    from warden.behavior import DetectReport

# Exit codes for CI pipelines, as for `warden audit`.
EXIT_ALERTS = 1  # an alert on a non-human identity at or above --fail-on
EXIT_INPUT = 2  # an option or configuration file that cannot be used

# Windows longer than this overflow the intervals of the workspace's SQL, and mean nothing.
MAX_DURATION = timedelta(days=36_500)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
    app.command("detect")(detect)


def detect(
    aws_credential_report: CredentialReportOption = [],  # noqa: B006
    aws_authorization_details: AuthorizationDetailsOption = [],  # noqa: B006
    cloudtrail: CloudTrailOption = [],  # noqa: B006
    k8s_objects: KubernetesObjectsOption = [],  # noqa: B006
    k8s_audit: KubernetesAuditOption = [],  # noqa: B006
    github: GitHubOption = [],  # noqa: B006
    warden_datastore: WardenDatastoreOption = [],  # noqa: B006
    secrets: SecretsOption = [],  # noqa: B006
    aws_live: AwsLiveOption = False,
    workspace: Annotated[
        Path | None,
        typer.Option(
            help="DuckDB workspace directory that keeps the baselines between runs, shared "
            "with 'warden audit' (default: a temporary one, so every event is new)"
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format")
    ] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file (default: standard output)")
    ] = None,
    learning_window: Annotated[
        str,
        typer.Option(
            help="How long after its first event an identity's deviations start to be "
            "reported (a duration such as 7d, 12h, 30m)"
        ),
    ] = "7d",
    dormant_after: Annotated[
        str,
        typer.Option(help="Idle time after which new activity is a wake-up (a duration)"),
    ] = "30d",
    anomaly_threshold: Annotated[
        float,
        typer.Option(
            help="Anomaly score (0 to 1) at or above which the learned detector reports an event",
            min=0.0,
            max=1.0,
        ),
    ] = 0.75,
    networks: Annotated[
        Path | None,
        typer.Option(
            help="CIDR table ('<cidr>,<name>' lines) or iptoasn.com TSV that names source "
            "networks (default: /24 and /64 prefixes)"
        ),
    ] = None,
    memory_limit: Annotated[
        str,
        typer.Option(
            help="DuckDB memory limit while detecting, such as 2GB. With too little memory a "
            "run spills to disk and slows down"
        ),
    ] = "2GB",
    all_alerts: Annotated[
        bool,
        typer.Option("--all", help="Also report alerts raised by earlier runs on this workspace"),
    ] = False,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit with code 1 when this run raises or updates an alert on a non-human "
            "identity with at least this severity (critical, high, medium, low, info)"
        ),
    ] = None,
) -> None:
    """Learn what each non-human identity normally does and report what it never did."""
    from rich.console import Console
    from rich.markup import escape

    from warden.behavior import DetectError, DetectOptions, Settings, run_detect
    from warden.governance import Severity

    threshold = None
    if fail_on is not None:
        try:
            threshold = Severity.parse(fail_on)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--fail-on") from None
    settings = Settings(
        learning_window=_duration(learning_window, "--learning-window"),
        dormant_after=_duration(dormant_after, "--dormant-after"),
        anomaly_threshold=anomaly_threshold,
    )
    log_sources = (cloudtrail, k8s_audit)
    inventory_sources = (
        aws_credential_report,
        aws_authorization_details,
        k8s_objects,
        github,
        warden_datastore,
        secrets,
        aws_live,
    )
    if not any((*log_sources, *inventory_sources, workspace)):
        raise typer.BadParameter(
            f"no source given: pass at least one of {SOURCE_FLAGS} or an existing --workspace"
        )
    reads_nothing = not any((*log_sources, *inventory_sources))
    if workspace is not None and reads_nothing and not (workspace / "warden.duckdb").is_file():
        raise typer.BadParameter(
            f"workspace {workspace} contains no warden.duckdb; pass sources to read, or the "
            "--workspace of an earlier 'warden audit' or 'warden detect' run",
            param_hint="--workspace",
        )

    console = Console(stderr=True)
    with LogProgress(console) as progress:
        options = DetectOptions(
            cloudtrail=cloudtrail,
            k8s_audit=k8s_audit,
            aws_credential_reports=aws_credential_report,
            aws_authorization_details=aws_authorization_details,
            k8s_objects=k8s_objects,
            github=github,
            warden_datastores=warden_datastore,
            secrets=secrets,
            aws_live=aws_live,
            workspace=workspace,
            settings=settings,
            networks=networks,
            include_previous=all_alerts,
            memory_limit=memory_limit,
            progress=progress,
        )
        try:
            report = run_detect(options)
        except DetectError as error:
            console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
            raise typer.Exit(EXIT_INPUT) from None

    try:
        _write(report, output_format, output)
    except OSError as error:
        console.print(
            f"[red]error:[/red] cannot write the report to {escape(str(output))}: "
            f"{escape(error.strerror or str(error))}; give a file path in a writable directory",
            highlight=False,
        )
        raise typer.Exit(EXIT_INPUT) from None
    worst = report.max_severity()
    if threshold is not None and worst is not None and worst >= threshold:
        console.print(
            f"failing: an alert on a non-human identity has severity {worst}, at or above "
            f"--fail-on {threshold}"
        )
        raise typer.Exit(EXIT_ALERTS)


def _duration(text: str, flag: str) -> timedelta:
    """Parse a Go-style duration ("12h", "90m"), or a number of days ("7d")."""
    from warden.config.duration import DurationError, parse_duration

    stripped = text.strip()
    days = stripped[:-1]
    if stripped.endswith("d") and days.replace(".", "", 1).isdigit():
        value = MAX_DURATION + timedelta(days=1)
        if float(days) <= MAX_DURATION.days:
            value = timedelta(days=float(days))
    else:
        try:
            value = parse_duration(stripped)
        except DurationError as error:
            raise typer.BadParameter(f"{error}; days are written as 7d", param_hint=flag) from None
    if value < timedelta(0):
        raise typer.BadParameter(
            f"invalid duration {text!r}: must not be negative", param_hint=flag
        )
    if value > MAX_DURATION:
        raise typer.BadParameter(
            f"invalid duration {text!r}: must be at most {MAX_DURATION.days}d (100 years)",
            param_hint=flag,
        )
    return value


def _write(report: DetectReport, output_format: OutputFormat, output: Path | None) -> None:
    import io

    from rich.console import Console

    from warden.behavior import render_table
    from warden.cli._files import write_private

    if output_format is OutputFormat.table:
        if output is None:
            console = Console()
            # A pipe gets Rich's default 80 columns, too narrow for ids and evidence.
            render_table(report, console if console.is_terminal else Console(width=160))
            return
        buffer = io.StringIO()
        render_table(report, Console(file=buffer, width=160, color_system=None))
        text = buffer.getvalue()
    else:
        text = json.dumps(report.to_json(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    # Alerts name identities, addresses and clients: readable by the owner only, as audit's.
    write_private(output, text.encode("utf-8"))
