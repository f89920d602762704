"""Reading registration entries and their child rows into RegistrationEntry values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Select, select

from warden.spiffe import Selector
from warden.store.columns import from_micros
from warden.store.models import RegistrationEntry
from warden.store.schema import (
    entry_dns_names,
    entry_federates_with,
    entry_selectors,
    registration_entries,
)

ID_CHUNK = 500

ENTRY_COLUMNS = (
    registration_entries.c.id,
    registration_entries.c.spiffe_id,
    registration_entries.c.parent_id,
    registration_entries.c.owner,
    registration_entries.c.x509_svid_ttl,
    registration_entries.c.jwt_svid_ttl,
    registration_entries.c.admin,
    registration_entries.c.downstream,
    registration_entries.c.hint,
    registration_entries.c.expires_at,
    registration_entries.c.description,
    registration_entries.c.revision,
    registration_entries.c.created_at,
    registration_entries.c.updated_at,
    registration_entries.c.last_delivered_at,
)


def _trusted_selector(selector_type: str, value: str) -> Selector:
    """Build a Selector without validating it again: stored selectors were validated when
    written, and checking a million of them at every load costs seconds."""
    selector = object.__new__(Selector)
    object.__setattr__(selector, "type", selector_type)
    object.__setattr__(selector, "value", value)
    return selector


class Interner:
    """Shared copies of equal strings and selectors, so that entries with the same parent,
    owner or selectors hold one object instead of one each."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._selectors: dict[tuple[str, str], Selector] = {}

    def string(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def selector(self, selector_type: str, value: str) -> Selector:
        key = (selector_type, value)
        found = self._selectors.get(key)
        if found is None:
            found = self._selectors[key] = _trusted_selector(
                self.string(selector_type), self.string(value)
            )
        return found


def build_entry(
    row: Sequence[Any],
    selectors: tuple[Selector, ...],
    dns_names: tuple[str, ...],
    federates_with: tuple[str, ...],
    interner: Interner,
) -> RegistrationEntry:
    """Build an entry from a row of ENTRY_COLUMNS and its children."""
    return RegistrationEntry(
        id=row[0],
        spiffe_id=row[1],
        parent_id=interner.string(row[2]),
        selectors=selectors,
        owner=interner.string(row[3]),
        x509_svid_ttl=row[4],
        jwt_svid_ttl=row[5],
        dns_names=dns_names,
        federates_with=federates_with,
        admin=bool(row[6]),
        downstream=bool(row[7]),
        hint=interner.string(row[8]),
        expires_at=row[9],
        description=interner.string(row[10]),
        revision=row[11],
        created_at=row[12],
        updated_at=row[13],
        last_delivered_at=row[14],
    )


def _children_by_entry(
    connection: Connection, query: Select[Any], ids: Sequence[str]
) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        entry_id_column = query.selected_columns[0]
        for row in connection.execute(query.where(entry_id_column.in_(chunk))):
            grouped.setdefault(row[0], []).append(row)
    return grouped


def load_entries(
    connection: Connection, ids: Iterable[str], interner: Interner | None = None
) -> dict[str, RegistrationEntry]:
    """Load the entries among `ids` that exist, with their children, keyed by id."""
    wanted = sorted(set(ids))
    interner = interner or Interner()
    rows: list[Any] = []
    for start in range(0, len(wanted), ID_CHUNK):
        chunk = wanted[start : start + ID_CHUNK]
        rows.extend(
            connection.execute(
                select(*ENTRY_COLUMNS).where(registration_entries.c.id.in_(chunk))
            ).all()
        )
    found = [row[0] for row in rows]
    selectors = _children_by_entry(
        connection,
        select(
            entry_selectors.c.entry_id, entry_selectors.c.type, entry_selectors.c.value
        ).order_by(entry_selectors.c.entry_id, entry_selectors.c.position),
        found,
    )
    dns_names = _children_by_entry(
        connection,
        select(entry_dns_names.c.entry_id, entry_dns_names.c.value).order_by(
            entry_dns_names.c.entry_id, entry_dns_names.c.position
        ),
        found,
    )
    federates = _children_by_entry(
        connection,
        select(entry_federates_with.c.entry_id, entry_federates_with.c.trust_domain).order_by(
            entry_federates_with.c.entry_id, entry_federates_with.c.position
        ),
        found,
    )
    return {
        row[0]: build_entry(
            row,
            tuple(interner.selector(s[1], s[2]) for s in selectors.get(row[0], ())),
            tuple(d[1] for d in dns_names.get(row[0], ())),
            tuple(interner.string(f[1]) for f in federates.get(row[0], ())),
            interner,
        )
        for row in rows
    }


def _grouped(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, list[Sequence[Any]]]]:
    for entry_id, group in groupby(rows, key=itemgetter(0)):
        yield entry_id, list(group)


def _driver_rows(
    connection: Connection, statement: Select[Any], batch_size: int
) -> Generator[Sequence[Any], None, None]:
    """Stream a parameterless SELECT through the driver's own cursor, skipping SQLAlchemy's
    per-row result processing.

    The cursor runs on the connection's open transaction, so it reads the same snapshot.
    PostgreSQL gets a server-side (named) cursor, so rows arrive in batches.
    """
    sql = str(statement.compile(dialect=connection.dialect))
    driver = connection.connection.driver_connection
    assert driver is not None
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"warden_load_{uuid.uuid4().hex}")
        cursor.itersize = batch_size
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        while True:
            batch = cursor.fetchmany(batch_size)
            if not batch:
                return
            yield from batch
    finally:
        cursor.close()


def _time_converter(dialect_name: str) -> Callable[[Any], datetime | None]:
    """Return the function that turns a stored timestamp into an aware UTC datetime."""
    if dialect_name == "sqlite":
        return lambda value: None if value is None else from_micros(value)
    return lambda value: None if value is None else value.astimezone(UTC)


def stream_all_entries(connection: Connection, batch_size: int) -> Iterator[RegistrationEntry]:
    """Yield every entry in id order, merging four ordered streams in Python.

    One query per table, each sorted by entry id, keeps memory flat and avoids a join
    that would repeat each entry once per selector. The connection must hold one snapshot
    (see StoreBase._read), or a concurrent write could pair an entry with another state's
    children.
    """
    entries = _driver_rows(
        connection, select(*ENTRY_COLUMNS).order_by(registration_entries.c.id), batch_size
    )
    children = [
        _driver_rows(
            connection,
            select(
                entry_selectors.c.entry_id, entry_selectors.c.type, entry_selectors.c.value
            ).order_by(entry_selectors.c.entry_id, entry_selectors.c.position),
            batch_size,
        ),
        _driver_rows(
            connection,
            select(entry_dns_names.c.entry_id, entry_dns_names.c.value).order_by(
                entry_dns_names.c.entry_id, entry_dns_names.c.position
            ),
            batch_size,
        ),
        _driver_rows(
            connection,
            select(entry_federates_with.c.entry_id, entry_federates_with.c.trust_domain).order_by(
                entry_federates_with.c.entry_id, entry_federates_with.c.position
            ),
            batch_size,
        ),
    ]
    time_of = _time_converter(connection.dialect.name)
    groups = [_grouped(stream) for stream in children]
    pending: list[tuple[str, list[Sequence[Any]]] | None] = [next(g, None) for g in groups]
    interner = Interner()
    try:
        for raw in entries:
            entry_id = raw[0]
            found: list[list[Sequence[Any]]] = [[], [], []]
            for index, group in enumerate(groups):
                current = pending[index]
                # Children of entries deleted between the two reads cannot occur in one
                # snapshot, but skipping ids smaller than the entry's keeps the merge correct.
                while current is not None and current[0] < entry_id:
                    current = next(group, None)
                if current is not None and current[0] == entry_id:
                    found[index] = current[1]
                    current = next(group, None)
                pending[index] = current
            row = (*raw[:9], time_of(raw[9]), raw[10], raw[11], *map(time_of, raw[12:15]))
            yield build_entry(
                row,
                tuple(interner.selector(s[1], s[2]) for s in found[0]),
                tuple(d[1] for d in found[1]),
                tuple(interner.string(f[1]) for f in found[2]),
                interner,
            )
    finally:
        # Close the cursors now, while their transaction is still open, when the caller
        # stops early.
        entries.close()
        for stream in children:
            stream.close()
