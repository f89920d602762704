"""`warden audit`: the inventory of non-human identities, their owners, ghosts and risks."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from warden.cli._sources import (
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
    from rich.console import Console

    from warden.governance import AuditReport

# Exit codes for CI pipelines.
EXIT_FINDINGS = 1  # a finding at or above --fail-on
EXIT_INPUT = 2  # an option or configuration file that cannot be used


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    html = "html"


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
    app.command("audit")(audit)


def _parse_as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"invalid time {text!r}: use ISO 8601, such as 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit(
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
            help="DuckDB workspace directory, kept for later runs and 'warden detect' "
            "(default: a temporary one)"
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Time at which ages and idle times are measured (ISO 8601; default: now)"
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format")
    ] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file (default: standard output)")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit with code 1 when a finding has at least this severity "
            "(critical, high, medium, low, info)"
        ),
    ] = None,
    ownership_map: Annotated[
        Path | None, typer.Option(help="YAML or JSON map of glob (identity id or name) to owner")
    ] = None,
    owner_key: Annotated[
        list[str],
        typer.Option(
            help="Tag, label or annotation key that names an owner (default: owner, team, "
            "owner-email, contact). Repeatable."
        ),
    ] = [],  # noqa: B006
    roster: Annotated[
        Path | None,
        typer.Option(
            help="Active people and teams, one a line (or a YAML/JSON list); owners not on it "
            "are reported as departed"
        ),
    ] = None,
    suppressions: Annotated[
        Path | None,
        typer.Option(
            help="YAML or JSON file of accepted findings (check, identity, accepted_by, reason, "
            "expires)"
        ),
    ] = None,
    unused_days: Annotated[
        int, typer.Option(help="Days without use after which an enabled identity is dormant", min=1)
    ] = 90,
    max_secret_age_days: Annotated[
        int, typer.Option(help="Maximum age in days of a long-lived secret", min=1)
    ] = 90,
) -> None:
    """Inventory non-human identities from exports and logs, and report ghosts and risks."""
    from rich.console import Console

    from warden.governance import AuditError, AuditOptions, Severity, Thresholds, run_audit
    from warden.governance.owners import DEFAULT_OWNER_KEYS

    threshold = None
    if fail_on is not None:
        try:
            threshold = Severity.parse(fail_on)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--fail-on") from None
    moment = _parse_as_of(as_of)
    sources_given = any(
        (
            aws_credential_report,
            aws_authorization_details,
            cloudtrail,
            k8s_objects,
            k8s_audit,
            github,
            warden_datastore,
            secrets,
            aws_live,
        )
    )
    if not sources_given and workspace is not None:
        from warden.governance.workspace import DATABASE_NAME

        # A mistyped path would otherwise audit a new, empty workspace and pass --fail-on.
        if not (workspace / DATABASE_NAME).is_file():
            raise typer.BadParameter(
                f"{workspace} holds no earlier audit (no {DATABASE_NAME}); give the workspace "
                "of an earlier run, or a source option",
                param_hint="--workspace",
            )
    if not sources_given and workspace is None:
        raise typer.BadParameter(
            "no source given: pass at least one of --aws-credential-report, "
            "--aws-authorization-details, --cloudtrail, --k8s-objects, --k8s-audit, --github, "
            "--warden-datastore, --secrets, --aws-live or an existing --workspace"
        )
    path_options = (
        ("--aws-credential-report", aws_credential_report),
        ("--aws-authorization-details", aws_authorization_details),
        ("--cloudtrail", cloudtrail),
        ("--k8s-objects", k8s_objects),
        ("--k8s-audit", k8s_audit),
        ("--github", github),
        ("--secrets", secrets),
    )
    # A mistyped path would only be a warning in the report, and --fail-on would pass.
    missing = [
        f"{flag} {path}" for flag, paths in path_options for path in paths if not path.exists()
    ]
    if missing:
        raise typer.BadParameter(f"not found: {', '.join(missing)}; check the paths")
    console = Console(stderr=True)
    with LogProgress(console) as progress:
        options = AuditOptions(
            aws_credential_reports=aws_credential_report,
            aws_authorization_details=aws_authorization_details,
            cloudtrail=cloudtrail,
            k8s_objects=k8s_objects,
            k8s_audit=k8s_audit,
            github=github,
            warden_datastores=warden_datastore,
            secrets=secrets,
            aws_live=aws_live,
            workspace=workspace,
            as_of=moment,
            ownership_map=ownership_map,
            owner_keys=tuple(owner_key) or DEFAULT_OWNER_KEYS,
            roster=roster,
            suppressions=suppressions,
            thresholds=Thresholds(unused_days=unused_days, max_secret_age_days=max_secret_age_days),
            progress=progress,
        )
        try:
            report = run_audit(options)
        except AuditError as error:
            _print_error(console, str(error))
            raise typer.Exit(EXIT_INPUT) from None

    try:
        _write(report, output_format, output)
    except OSError as error:
        _print_error(console, f"cannot write the report to {output}: {error.strerror or error}")
        raise typer.Exit(EXIT_INPUT) from None
    worst = report.max_severity()
    if threshold is not None and worst is not None and worst >= threshold:
        console.print(f"failing: a finding has severity {worst}, at or above --fail-on {threshold}")
        raise typer.Exit(EXIT_FINDINGS)


def _print_error(console: Console, message: str) -> None:
    """Print an error whose text may quote input, such as a file name, without markup."""
    from rich.text import Text

    console.print(Text("error: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def _write(report: AuditReport, output_format: OutputFormat, output: Path | None) -> None:
    import json

    from rich.console import Console

    from warden.governance import render_html, render_table

    if output_format is OutputFormat.table:
        if output is None:
            render_table(report, Console())
            return
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            render_table(report, Console(file=spool, width=160, color_system=None))
            spool.seek(0)
            text = spool.read()
    elif output_format is OutputFormat.json:
        text = json.dumps(report.to_json(), indent=2) + "\n"
    else:
        text = render_html(report)
    if output is None:
        sys.stdout.write(text)
        return
    _write_atomically(output, text)


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, so readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
