"""SPIFFE bundles by trust domain, and each server's CA journal.

These implement the `BundleStore` and `JournalStore` protocols of warden.pki. The datastore
treats both as opaque bytes: the bundle is the SPIFFE bundle JSON, the journal whatever the
CA serialises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from warden.spiffe import SpiffeError, TrustDomain
from warden.store._base import StoreBase
from warden.store.errors import InvalidInput, NotFound
from warden.store.schema import bundles, ca_journals


def _trust_domain(name: str) -> str:
    try:
        return TrustDomain.parse(name).name
    except SpiffeError as error:
        raise InvalidInput(f"bundle: {error}") from None


class BundleJournalStore(StoreBase):
    """Bundles and CA journals."""

    def get_bundle(self, trust_domain: str) -> bytes | None:
        """Return the stored bundle JSON of a trust domain, or None."""
        with self._read() as connection:
            data = connection.execute(
                select(bundles.c.data).where(bundles.c.trust_domain == _trust_domain(trust_domain))
            ).scalar()
        return bytes(data) if data is not None else None

    def update_bundle(self, trust_domain: str, mutate: Callable[[bytes | None], bytes]) -> bytes:
        """Run `mutate` on the stored bundle inside one transaction, store and return its result.

        The row stays locked while `mutate` runs (SELECT ... FOR UPDATE on PostgreSQL, the
        write lock on SQLite), so servers sharing the database apply their changes one after
        another and none is lost. If `mutate` raises, nothing changes.
        """
        name = _trust_domain(trust_domain)
        now = self._now()
        with self._write() as connection:
            if self._postgres:
                # Create the row first so that even the first writers have a row to lock.
                connection.execute(
                    postgres_insert(bundles)
                    .values(trust_domain=name, data=None, created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["trust_domain"])
                )
                query = select(bundles.c.data).where(bundles.c.trust_domain == name)
                row: Any = connection.execute(query.with_for_update()).one()
            else:
                row = connection.execute(
                    select(bundles.c.data).where(bundles.c.trust_domain == name)
                ).one_or_none()
                if row is None:
                    connection.execute(
                        bundles.insert().values(
                            trust_domain=name, data=None, created_at=now, updated_at=now
                        )
                    )
            current = bytes(row.data) if row is not None and row.data is not None else None
            result = mutate(current)
            if not isinstance(result, bytes | bytearray):
                raise InvalidInput(
                    f"bundle {name}: the update function returned {type(result).__name__}, "
                    "not bytes"
                )
            connection.execute(
                update(bundles)
                .where(bundles.c.trust_domain == name)
                .values(data=bytes(result), updated_at=now)
            )
        return bytes(result)

    def set_bundle(self, trust_domain: str, data: bytes) -> None:
        """Store a bundle as given, replacing any stored one (federated bundles)."""
        self.update_bundle(trust_domain, lambda _current: data)

    def list_bundles(self) -> dict[str, bytes]:
        """Return every stored bundle by trust domain."""
        with self._read() as connection:
            rows = connection.execute(
                select(bundles.c.trust_domain, bundles.c.data)
                .where(bundles.c.data.is_not(None))
                .order_by(bundles.c.trust_domain)
            )
            return {row.trust_domain: bytes(row.data) for row in rows}

    def delete_bundle(self, trust_domain: str) -> None:
        """Delete the bundle of a (federated) trust domain."""
        name = _trust_domain(trust_domain)
        with self._write() as connection:
            result = connection.execute(delete(bundles).where(bundles.c.trust_domain == name))
        if not result.rowcount:
            raise NotFound(f"bundle of trust domain {name} not found")

    def load_journal(self, server_id: str) -> bytes | None:
        """Return the CA journal saved by `server_id`, or None."""
        with self._read() as connection:
            data = connection.execute(
                select(ca_journals.c.data).where(ca_journals.c.server_id == server_id)
            ).scalar()
        return bytes(data) if data is not None else None

    def save_journal(self, server_id: str, data: bytes) -> None:
        """Store the CA journal of `server_id`, replacing the previous one atomically."""
        if not server_id:
            raise InvalidInput("CA journal: server_id is empty; give each server a stable id")
        now = self._now()
        insert = postgres_insert if self._postgres else sqlite_insert
        statement = insert(ca_journals).values(
            server_id=server_id, data=bytes(data), updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["server_id"],
            set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
        )
        with self._write() as connection:
            connection.execute(statement)
