"""Fixtures for the governance tests: audits of the real datasets, run once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from governance_support import (
    AUTHORIZATION_DETAILS,
    IAM_AS_OF,
    INVICTUS,
    INVICTUS_AS_OF,
)

from warden.governance import AuditOptions, AuditReport, run_audit


@pytest.fixture(scope="session")
def iam_report(datasets_dir: Path) -> AuditReport:
    return run_audit(
        AuditOptions(
            aws_authorization_details=[datasets_dir / AUTHORIZATION_DETAILS], as_of=IAM_AS_OF
        )
    )


@pytest.fixture(scope="session")
def invictus_report(datasets_dir: Path) -> AuditReport:
    return run_audit(AuditOptions(cloudtrail=[datasets_dir / INVICTUS], as_of=INVICTUS_AS_OF))
