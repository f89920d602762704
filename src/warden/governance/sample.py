"""The sample export shipped in examples/governance, as ready-made audit options.

`make demo` audits it next to the Warden registry it created:

    options = sample_options(warden_datastores=[datastore_path])
    render_table(run_audit(options), console)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from warden.governance.audit import AuditOptions

# The sample's own date: ages and idle times are measured as of this moment.
SAMPLE_AS_OF = datetime(2024, 6, 1, tzinfo=UTC)


def sample_directory() -> Path:
    """Return the examples/governance folder of a source checkout.

    Raises FileNotFoundError when Warden runs from an installation without the examples.
    """
    directory = Path(__file__).resolve().parents[3] / "examples" / "governance"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"sample export not found at {directory}; run from a source checkout of Warden"
        )
    return directory


def sample_options(
    root: Path | None = None,
    warden_datastores: Sequence[str] = (),
    as_of: datetime | None = SAMPLE_AS_OF,
    workspace: Path | None = None,
) -> AuditOptions:
    """Audit options that read every file of the sample export (and any given datastores).

    Pass `as_of=None` to audit as of now, which makes the sample's identities look older.
    """
    root = root or sample_directory()
    return AuditOptions(
        aws_authorization_details=[root / "aws" / "authorization-details.json"],
        aws_credential_reports=[root / "aws" / "credential-report.csv"],
        cloudtrail=[root / "aws" / "cloudtrail"],
        k8s_objects=[root / "kubernetes" / "objects.json"],
        k8s_audit=[root / "kubernetes" / "audit.jsonl"],
        github=[root / "github"],
        warden_datastores=list(warden_datastores),
        ownership_map=root / "ownership.yaml",
        roster=root / "roster.txt",
        suppressions=root / "suppressions.yaml",
        as_of=as_of,
        workspace=workspace,
    )
