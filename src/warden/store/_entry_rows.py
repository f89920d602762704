"""Reading registration entries and their child rows into RegistrationEntry values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Select, select

from warden.spiffe import Selector
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


class Interner:
    """Shares equal strings and selectors between entries: a million entries often have
    only a few thousand distinct parents, owners and selectors."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._selectors: dict[tuple[str, str], Selector] = {}

    def string(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def selector(self, selector_type: str, value: str) -> Selector:
        key = (selector_type, value)
        found = self._selectors.get(key)
        if found is None:
            # Stored selectors were validated when written.
            found = self._selectors[key] = Selector(self.string(selector_type), self.string(value))
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


def stream_all_entries(connection: Connection, batch_size: int) -> Iterator[RegistrationEntry]:
    """Yield every entry in id order, merging four ordered streams in Python.

    One query per table, each sorted by entry id, keeps memory flat and avoids a join
    that would repeat each entry once per selector. The connection must hold one snapshot
    (see StoreBase._read), or a concurrent write could pair an entry with another state's
    children.
    """
    streaming = connection.execution_options(stream_results=True, yield_per=batch_size)
    entries = streaming.execute(select(*ENTRY_COLUMNS).order_by(registration_entries.c.id))
    children = [
        streaming.execute(
            select(
                entry_selectors.c.entry_id, entry_selectors.c.type, entry_selectors.c.value
            ).order_by(entry_selectors.c.entry_id, entry_selectors.c.position)
        ),
        streaming.execute(
            select(entry_dns_names.c.entry_id, entry_dns_names.c.value).order_by(
                entry_dns_names.c.entry_id, entry_dns_names.c.position
            )
        ),
        streaming.execute(
            select(entry_federates_with.c.entry_id, entry_federates_with.c.trust_domain).order_by(
                entry_federates_with.c.entry_id, entry_federates_with.c.position
            )
        ),
    ]
    groups = [_grouped(stream) for stream in children]
    pending: list[tuple[str, list[Sequence[Any]]] | None] = [next(g, None) for g in groups]
    interner = Interner()
    for row in entries:
        entry_id = row[0]
        found: list[list[Sequence[Any]]] = [[], [], []]
        for index, group in enumerate(groups):
            current = pending[index]
            # Children of entries deleted between the two reads cannot occur in one snapshot,
            # but skipping ids smaller than the entry's keeps the merge correct regardless.
            while current is not None and current[0] < entry_id:
                current = next(group, None)
            if current is not None and current[0] == entry_id:
                found[index] = current[1]
                current = next(group, None)
            pending[index] = current
        yield build_entry(
            row,
            tuple(interner.selector(s[1], s[2]) for s in found[0]),
            tuple(d[1] for d in found[1]),
            tuple(interner.string(f[1]) for f in found[2]),
            interner,
        )
