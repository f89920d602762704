"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The datasets live beside the checkout; WARDEN_DATASETS points elsewhere when needed.
DATASETS = Path(os.environ.get("WARDEN_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real public datasets beside the checkout. Skips when absent, fails under CI=true."""
    if not DATASETS.is_dir():
        message = f"real datasets not found at {DATASETS}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must provide them")
        pytest.skip(f"{message}; set WARDEN_DATASETS to their folder to run this test")
    return DATASETS
