"""Schema migrations: run at open, once, under a lock, and matching the metadata."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from warden.store import Datastore, SchemaError
from warden.store.engine import create_datastore_engine, head_revision, upgrade_schema
from warden.store.schema import metadata
from warden.store.urls import to_sqlalchemy_url


def test_migrated_schema_matches_metadata(datastore: Datastore) -> None:
    with datastore.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_open_twice_migrates_once(datastore: Datastore, datastore_url: str) -> None:
    engine = create_datastore_engine(to_sqlalchemy_url(datastore_url))
    try:
        assert upgrade_schema(engine) is False
    finally:
        engine.dispose()


def test_concurrent_opens_of_empty_database(backend: str, tmp_path: Path, request: Any) -> None:
    """Several servers starting together on an empty database: one migrates, all open."""
    if backend == "sqlite":
        url = str(tmp_path / "datastore.sqlite3")
    else:
        url = request.getfixturevalue("postgres_cluster").create_database()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            Datastore.open(url).close()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = create_datastore_engine(to_sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head_revision()
            assert connection.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    finally:
        engine.dispose()


def test_unknown_revision_is_rejected(datastore: Datastore, datastore_url: str) -> None:
    engine = create_datastore_engine(to_sqlalchemy_url(datastore_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaError, match="revision '9999_future', which this version"):
        Datastore.open(datastore_url)


def test_open_without_migrate_needs_current_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="migrate it as the role that owns the tables"):
        Datastore.open(tmp_path / "empty.sqlite3", migrate=False)


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "datastore.sqlite3"
    Datastore.for_data_dir(tmp_path / "data").close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with Datastore.for_data_dir(tmp_path) as store, store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.postgres
def test_unreachable_postgres_is_reported(postgres_cluster: Any) -> None:
    url = f"postgresql://nobody@127.0.0.1:{postgres_cluster.port}/missing_database"
    with pytest.raises(Exception, match="cannot connect to datastore") as raised:
        Datastore.open(url)
    assert "missing_database" in str(raised.value)


def test_postgres_keyword_form_opens(postgres_cluster: Any) -> None:
    database = postgres_cluster.create_database().rsplit("/", 1)[1]
    with Datastore.open(postgres_cluster.conninfo(database)) as store:
        assert store.is_postgres
