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


# --- PostgreSQL ------------------------------------------------------------------------
# A real PostgreSQL cluster per test session (per pytest-xdist worker), started from the
# machine's initdb and pg_ctl by tests/pg.py. Tests that use it are marked `postgres`.

POSTGRES_FIXTURES = frozenset({"postgres_cluster", "postgres_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_cluster():  # type: ignore[no-untyped-def]
    """A running PostgreSQL cluster; `.superuser_url` reaches it as `postgres`.

    Skips when initdb and pg_ctl are missing, fails under CI=true.
    """
    from pg import PostgresCluster, find_bindir

    if find_bindir() is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install postgresql-15")
        pytest.skip(f"{message}; install postgresql-15 or set WARDEN_PG_BINDIR")
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:  # type: ignore[no-untyped-def]
    """The SQLAlchemy URL of a fresh, empty database on the session's cluster."""
    return postgres_cluster.create_database()
