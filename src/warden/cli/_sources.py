"""Source options shared by `warden audit` and `warden detect`, and their progress bar.

Each alias is a parameter type: `cloudtrail: CloudTrailOption = []` declares `--cloudtrail`
with the same help text in both commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

CredentialReportOption = Annotated[
    list[Path],
    typer.Option(help="IAM credential report CSV (aws iam get-credential-report). Repeatable."),
]
AuthorizationDetailsOption = Annotated[
    list[Path],
    typer.Option(help="Output of 'aws iam get-account-authorization-details' (JSON). Repeatable."),
]
CloudTrailOption = Annotated[
    list[Path],
    typer.Option(
        help="CloudTrail file or directory, read recursively (.json, .json.gz, JSON Lines). "
        "Repeatable."
    ),
]
KubernetesObjectsOption = Annotated[
    list[Path],
    typer.Option(
        help="Output of kubectl get serviceaccounts,secrets,rolebindings,"
        "clusterrolebindings,pods -A -o json. Repeatable."
    ),
]
KubernetesAuditOption = Annotated[
    list[Path],
    typer.Option(
        help="Kubernetes audit log file or directory (audit.k8s.io/v1 JSON lines). Repeatable."
    ),
]
GitHubOption = Annotated[
    list[Path],
    typer.Option(
        help="GitHub REST export of deploy keys or app installations (file or directory). "
        "Repeatable."
    ),
]
WardenDatastoreOption = Annotated[
    list[str],
    typer.Option(help="Warden datastore: SQLite path or connection string. Repeatable."),
]
SecretsOption = Annotated[
    list[Path],
    typer.Option(
        help="Code or configuration to scan for leaked keys, added as NHI2 findings. Repeatable."
    ),
]
AwsLiveOption = Annotated[
    bool,
    typer.Option(
        "--aws-live",
        help="Also collect IAM state from AWS with boto3's default credentials "
        "(AWS_PROFILE, AWS_ENDPOINT_URL and the rest apply)",
    ),
]

SOURCE_FLAGS = (
    "--aws-credential-report, --aws-authorization-details, --cloudtrail, --k8s-objects, "
    "--k8s-audit, --github, --warden-datastore, --secrets, --aws-live"
)


class LogProgress:
    """A Rich progress bar on standard error while log files are read."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> LogProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(f"reading {stage}", total=total or None)
            self._tasks[stage] = task
        self._progress.update(task, completed=done, total=total or None)
