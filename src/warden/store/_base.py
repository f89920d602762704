"""The engine, clock and transaction helpers shared by the datastore's parts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from warden.store.engine import WRITE_OPTION
from warden.store.errors import DatabaseUnavailable
from warden.store.urls import describe_url


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """Holds the engine; subclasses add the queries of one concept each."""

    def __init__(
        self,
        engine: Engine,
        *,
        server_id: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._server_id = server_id
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return self._postgres

    @property
    def server_id(self) -> str:
        """The id of the server using this datastore, recorded in audit records."""
        return self._server_id

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _unavailable(self, error: OperationalError) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"datastore {describe_url(self._engine.url)} failed: {error.orig}; check that the "
            "database is running and reachable, then retry"
        )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """Open a write transaction: committed when the block ends, rolled back on error."""
        try:
            with self._engine.connect() as connection:
                if not self._postgres:
                    connection = connection.execution_options(**{WRITE_OPTION: True})
                with connection.begin():
                    yield connection
        except OperationalError as error:
            raise self._unavailable(error) from error

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """Open a read transaction; `snapshot` makes all its statements see one snapshot.

        SQLite transactions are snapshots already; PostgreSQL needs REPEATABLE READ for that.
        """
        try:
            with self._engine.connect() as connection:
                if snapshot and self._postgres:
                    connection = connection.execution_options(isolation_level="REPEATABLE READ")
                with connection.begin():
                    yield connection
        except OperationalError as error:
            raise self._unavailable(error) from error
