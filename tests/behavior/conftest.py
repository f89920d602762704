"""Fixtures for the detection tests: runs over the real datasets, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from behavior_support import DETONATIONS, INVICTUS, SHORT_LEARNING, detect, load_labels

from warden.behavior import DetectReport


@pytest.fixture(scope="session")
def invictus_report(datasets_dir: Path, tmp_path_factory) -> DetectReport:
    """The invictus capture with the default settings (a learning window of a week)."""
    return detect(tmp_path_factory.mktemp("invictus"), [datasets_dir / INVICTUS], event_scores=True)


@pytest.fixture(scope="session")
def invictus_short_report(datasets_dir: Path, tmp_path_factory) -> DetectReport:
    """The invictus capture with a ten-minute learning window, so baselines count."""
    return detect(
        tmp_path_factory.mktemp("invictus-short"),
        [datasets_dir / INVICTUS],
        settings=SHORT_LEARNING,
        event_scores=True,
    )


@pytest.fixture(scope="session")
def detonation_report(datasets_dir: Path, tmp_path_factory) -> DetectReport:
    return detect(tmp_path_factory.mktemp("detonations"), [datasets_dir / DETONATIONS])


@pytest.fixture(scope="session")
def labels(datasets_dir: Path) -> dict[str, str]:
    return load_labels(datasets_dir)
