"""The `Datastore`: one object that opens the database and offers every query.

    store = Datastore.for_data_dir("/var/lib/warden/server")         # SQLite
    store = Datastore.open("postgresql://warden@db.example/warden")  # PostgreSQL

Opening runs the schema migrations (under a lock, see warden.store.engine). The methods are
synchronous and thread-safe; the asynchronous server calls them through a thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL

from warden.store._base import utc_now
from warden.store.audit import AuditLogStore
from warden.store.bundles import BundleJournalStore
from warden.store.engine import (
    DEFAULT_SQLITE_BUSY_TIMEOUT,
    create_datastore_engine,
    require_current_schema,
    upgrade_schema,
)
from warden.store.entries import EntryStore
from warden.store.leases import LeaseStore
from warden.store.nodes import NodeStore
from warden.store.tokens import TokenStore
from warden.store.urls import SQLITE_FILE_NAME, describe_url, sqlite_url, to_sqlalchemy_url

log = logging.getLogger(__name__)


class Datastore(EntryStore, NodeStore, TokenStore, BundleJournalStore, AuditLogStore, LeaseStore):
    """Warden's server datastore on SQLite or PostgreSQL.

    Implements warden.pki's `JournalStore` and `BundleStore` protocols.
    """

    @classmethod
    def open(
        cls,
        url: str | URL | Path,
        *,
        migrate: bool = True,
        server_id: str = "",
        clock: Callable[[], datetime] = utc_now,
        sqlite_busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> Datastore:
        """Open the datastore at `url` (any form warden.store.urls accepts).

        With `migrate` (the default) the schema is brought to the newest revision first; a
        server running as a restricted role opens with `migrate=False` after an operator
        migrated as the owner, and fails with SchemaError if the schema is not current.
        """
        sqlalchemy_url = to_sqlalchemy_url(url)
        engine = create_datastore_engine(
            sqlalchemy_url,
            sqlite_busy_timeout=sqlite_busy_timeout,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        try:
            if migrate:
                upgrade_schema(engine)
            else:
                require_current_schema(engine)
        except Exception:
            engine.dispose()
            raise
        log.info(
            "datastore opened",
            extra={"address": describe_url(sqlalchemy_url), "dialect": engine.dialect.name},
        )
        return cls(engine, server_id=server_id, clock=clock)

    @classmethod
    def for_data_dir(
        cls,
        data_dir: str | Path,
        *,
        server_id: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> Datastore:
        """Open the default SQLite datastore, `<data_dir>/datastore.sqlite3`."""
        return cls.open(
            sqlite_url(Path(data_dir) / SQLITE_FILE_NAME), server_id=server_id, clock=clock
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Datastore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
