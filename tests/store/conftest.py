"""Fixtures of the datastore tests: every test using `datastore` runs on SQLite and on a
real PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from warden.store import Datastore


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: Any) -> str:
    """A migrated database that fresh test databases are copied from, to skip migrating."""
    name = "warden_template"
    url = postgres_cluster.create_database(name)
    Datastore.open(url).close()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def datastore_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, migrated datastore on the backend under test."""
    if backend == "sqlite":
        return str(tmp_path / "datastore.sqlite3")
    cluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template")
    return str(cluster.create_database(template=template))


@pytest.fixture
def datastore(datastore_url: str, clock: FakeClock) -> Iterator[Datastore]:
    store = Datastore.open(datastore_url, server_id="server-a", clock=clock)
    try:
        yield store
    finally:
        store.close()
