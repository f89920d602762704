"""Engines for SQLite and PostgreSQL, and schema migrations run at open.

SQLite runs in WAL mode with a busy timeout, so readers never block the writer and a second
writer waits instead of failing. pysqlite's own transaction handling is turned off and
Warden emits BEGIN itself: plain BEGIN for reads (one snapshot across the statements of a
read) and BEGIN IMMEDIATE for writes, which takes the write lock up front so two writers
never deadlock upgrading a read lock.

Migrations run through Alembic at open. Two servers starting together take a lock first:
`pg_advisory_lock` on PostgreSQL, the SQLite write lock (BEGIN IMMEDIATE) on SQLite, so one
migrates and the other then finds the schema current.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from warden.store.errors import DatabaseUnavailable, SchemaError
from warden.store.urls import describe_url, to_sqlalchemy_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating ("warden" in ASCII).
MIGRATION_LOCK_KEY = 0x77617264656E

#: Seconds a SQLite connection waits for another writer before failing.
DEFAULT_SQLITE_BUSY_TIMEOUT = 30.0

#: Execution option that marks a connection as about to write (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "warden_write"


def _prepare_sqlite_file(database: str) -> None:
    """Create the database file and its directory owner-only, before SQLite creates them."""
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(descriptor)


def _install_sqlite_hooks(engine: Engine, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                cursor.execute("PRAGMA journal_mode = WAL")
                # FULL, because a commit lost on power failure could un-use a join token.
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def create_datastore_engine(
    url: URL,
    *,
    read_only: bool = False,
    sqlite_busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT,
    pool_size: int = 5,
    max_overflow: int = 10,
) -> Engine:
    """Create an engine for a SQLite or PostgreSQL datastore URL (see warden.store.urls)."""
    if url.drivername == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:":
            raise SchemaError(
                "an in-memory SQLite datastore is not supported, because each connection would "
                "see its own empty database; give a file path"
            )
        if read_only:
            if not Path(database).is_file():
                raise DatabaseUnavailable(
                    f"SQLite datastore {database} not found; check the path or the server's "
                    "data_dir"
                )
            url = URL.create("sqlite", database=f"file:{database}?mode=ro", query={"uri": "true"})
        else:
            _prepare_sqlite_file(database)
        engine = create_engine(
            url,
            connect_args={"timeout": sqlite_busy_timeout, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        _install_sqlite_hooks(engine, read_only)
        return engine
    connect_args: dict[str, Any] = {}
    if "application_name" not in url.query:
        connect_args["application_name"] = "warden"
    engine = create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    if read_only:

        @event.listens_for(engine, "connect")
        def _read_only_session(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """Return the newest migration revision shipped with this version of Warden."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the database's migration revision, or None for an empty database."""
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        connection.rollback()
    return revision


def check_known_revision(revision: str | None, engine: Engine) -> None:
    if revision is None:
        return
    script = ScriptDirectory.from_config(_alembic_config())
    try:
        script.get_revision(revision)
    except Exception:
        raise SchemaError(
            f"datastore {describe_url(engine.url)} has schema revision {revision!r}, which this "
            f"version of Warden does not know (newest known: {head_revision()!r}); upgrade Warden "
            "or point it at another database"
        ) from None


def upgrade_schema(engine: Engine) -> bool:
    """Migrate the database to the newest revision; return True when anything ran.

    Safe to call from several processes at once: they serialize on a lock, and the ones that
    get it after the first find the schema current.
    """
    head = head_revision()
    try:
        revision = current_revision(engine)
    except OperationalError as error:
        raise DatabaseUnavailable(
            f"cannot connect to datastore {describe_url(engine.url)}: {error.orig}; check that "
            "the database is running and the connection string is right"
        ) from error
    check_known_revision(revision, engine)
    if revision == head:
        return False
    config = _alembic_config()
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()
            try:
                connection = connection.execution_options(**{WRITE_OPTION: True})
                with connection.begin():
                    config.attributes["connection"] = connection
                    log.info(
                        "migrating datastore schema",
                        extra={"address": describe_url(engine.url), "revision": head},
                    )
                    command.upgrade(config, "head")
            finally:
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    connection.commit()
    except DBAPIError as error:
        raise SchemaError(
            f"migrating datastore {describe_url(engine.url)} from revision {revision!r} to "
            f"{head!r} failed: {error.orig}; migrate as the role that owns the tables, for "
            "example by starting the server once with that role's connection string"
        ) from error
    return True


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaError unless the database is at this Warden's newest revision."""
    try:
        revision = current_revision(engine)
    except OperationalError as error:
        raise DatabaseUnavailable(
            f"cannot connect to datastore {describe_url(engine.url)}: {error.orig}; check that "
            "the database is running and the connection string is right"
        ) from error
    head = head_revision()
    if revision != head:
        check_known_revision(revision, engine)
        raise SchemaError(
            f"datastore {describe_url(engine.url)} has schema revision {revision!r}, but this "
            f"Warden needs {head!r}; migrate it as the role that owns the tables (start the "
            "server once with that role's connection string), then start it again"
        )


def migrate_datastore(url: str | URL) -> bool:
    """Bring the datastore at `url` to the newest schema; return True when anything ran.

    Operators run this as the role that owns the tables before starting servers that
    connect as a restricted role (see warden.store.roles).
    """
    engine = create_datastore_engine(to_sqlalchemy_url(url))
    try:
        return upgrade_schema(engine)
    finally:
        engine.dispose()
