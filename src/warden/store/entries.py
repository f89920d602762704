"""Registration entries: create, update, delete, read, bulk load, and delivery times.

Every change writes the entry, an event in the entry change log and an audit record in one
transaction, so a change is either entirely visible (to caches following the log and to the
audit trail) or not at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, not_, or_, select, update
from sqlalchemy.exc import IntegrityError

from warden.spiffe import Selector, SpiffeError
from warden.store._entry_rows import load_entries, stream_all_entries
from warden.store.audit import ChainHead, append_records, lock_chain_head
from warden.store.columns import UtcDateTime, require_aware
from warden.store.errors import (
    AlreadyExists,
    InvalidEntry,
    InvalidInput,
    NotFound,
    RevisionConflict,
)
from warden.store.events import EntryEventStore, insert_entry_events
from warden.store.models import (
    AuditEvent,
    EntryEventKind,
    EntrySpec,
    RegistrationEntry,
    SelectorMatch,
)
from warden.store.schema import (
    entry_dns_names,
    entry_federates_with,
    entry_selectors,
    registration_entries,
)
from warden.store.validation import ValidEntry, validate_entry, validate_entry_id

log = logging.getLogger(__name__)

_DELIVERY_CHUNK = 1000


def _entry_row(entry_id: str, valid: ValidEntry, now: datetime, revision: int) -> dict[str, Any]:
    return {
        "id": entry_id,
        "spiffe_id": valid.spiffe_id,
        "parent_id": valid.parent_id,
        "similarity_key": valid.similarity_key,
        "owner": valid.owner,
        "description": valid.description,
        "x509_svid_ttl": valid.x509_svid_ttl,
        "jwt_svid_ttl": valid.jwt_svid_ttl,
        "admin": valid.admin,
        "downstream": valid.downstream,
        "hint": valid.hint,
        "expires_at": valid.expires_at,
        "revision": revision,
        "created_at": now,
        "updated_at": now,
        "last_delivered_at": None,
    }


def _insert_children(connection: Connection, items: Sequence[tuple[str, ValidEntry]]) -> None:
    selectors = [
        {"entry_id": entry_id, "position": index, "type": s.type, "value": s.value}
        for entry_id, valid in items
        for index, s in enumerate(valid.selectors)
    ]
    dns_names = [
        {"entry_id": entry_id, "position": index, "value": name}
        for entry_id, valid in items
        for index, name in enumerate(valid.dns_names)
    ]
    federates = [
        {"entry_id": entry_id, "position": index, "trust_domain": domain}
        for entry_id, valid in items
        for index, domain in enumerate(valid.federates_with)
    ]
    if selectors:
        connection.execute(entry_selectors.insert(), selectors)
    if dns_names:
        connection.execute(entry_dns_names.insert(), dns_names)
    if federates:
        connection.execute(entry_federates_with.insert(), federates)


def _delete_children(connection: Connection, entry_id: str) -> None:
    for table in (entry_selectors, entry_dns_names, entry_federates_with):
        connection.execute(delete(table).where(table.c.entry_id == entry_id))


def _audit_details(entry_id: str, valid: ValidEntry) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "parent_id": valid.parent_id,
        "selectors": [str(s) for s in valid.selectors],
        "owner": valid.owner,
    }


def _selector_condition(selectors: Sequence[Selector]) -> Any:
    return or_(
        *(
            and_(entry_selectors.c.type == s.type, entry_selectors.c.value == s.value)
            for s in selectors
        )
    )


class EntryStore(EntryEventStore):
    """Registration entries."""

    # --- writes -----------------------------------------------------------------------

    def create_entry(
        self, spec: EntrySpec, *, actor: str, entry_id: str | None = None
    ) -> RegistrationEntry:
        """Create one entry and return it as stored.

        Raises InvalidEntry for a bad field and AlreadyExists when an entry with the same
        SPIFFE ID, parent ID and selector set, or the same id, exists.
        """
        return self.create_entries([spec], actor=actor, entry_ids=[entry_id])[0]

    def create_entries(
        self,
        specs: Sequence[EntrySpec],
        *,
        actor: str,
        entry_ids: Sequence[str | None] | None = None,
    ) -> list[RegistrationEntry]:
        """Create several entries in one transaction: all of them or, on any error, none.

        Every spec is validated before anything is written; an error names the failing
        entry's position in the batch when there is more than one.
        """
        if entry_ids is not None and len(entry_ids) != len(specs):
            raise InvalidInput(
                f"{len(entry_ids)} entry ids given for {len(specs)} entries; give one per entry"
            )
        items = self._validate_batch(specs, entry_ids)
        if not items:
            return []
        now = self._now()
        try:
            with self._write() as connection:
                head = lock_chain_head(connection, self._postgres)
                connection.execute(
                    registration_entries.insert(),
                    [_entry_row(entry_id, valid, now, 1) for entry_id, valid in items],
                )
                _insert_children(connection, items)
                insert_entry_events(
                    connection, ((entry_id, EntryEventKind.CREATED) for entry_id, _ in items), now
                )
                self._audit(
                    connection,
                    head,
                    [
                        AuditEvent(
                            action="entry.create",
                            actor=actor,
                            subject=valid.spiffe_id,
                            details=_audit_details(entry_id, valid),
                        )
                        for entry_id, valid in items
                    ],
                    now,
                )
                created = load_entries(connection, (entry_id for entry_id, _ in items))
        except IntegrityError:
            raise self._explain_conflict(items) from None
        log.info(
            "entries created",
            extra={"count": len(items), "entry_id": items[0][0], "caller": actor},
        )
        return [created[entry_id] for entry_id, _ in items]

    def _validate_batch(
        self, specs: Sequence[EntrySpec], entry_ids: Sequence[str | None] | None
    ) -> list[tuple[str, ValidEntry]]:
        items: list[tuple[str, ValidEntry]] = []
        seen_keys: dict[str, int] = {}
        seen_ids: set[str] = set()
        for index, spec in enumerate(specs):
            requested = entry_ids[index] if entry_ids is not None else None
            try:
                valid = validate_entry(spec)
                entry_id = validate_entry_id(requested) if requested else str(uuid.uuid4())
            except InvalidEntry as error:
                if len(specs) == 1:
                    raise
                raise InvalidEntry(f"entry {index + 1} of {len(specs)}: {error}") from None
            if valid.similarity_key in seen_keys:
                raise InvalidEntry(
                    f"entries {seen_keys[valid.similarity_key] + 1} and {index + 1} of the batch "
                    f"are the same entry ({valid.spiffe_id} under {valid.parent_id} with the "
                    "same selectors); remove one"
                )
            if entry_id in seen_ids:
                raise InvalidEntry(f"entry id {entry_id!r} appears twice in the batch")
            seen_keys[valid.similarity_key] = index
            seen_ids.add(entry_id)
            items.append((entry_id, valid))
        return items

    def _explain_conflict(self, items: Sequence[tuple[str, ValidEntry]]) -> Exception:
        """Find which entry of a failed batch already exists, for the error message."""
        by_key = {valid.similarity_key: (entry_id, valid) for entry_id, valid in items}
        with self._read() as connection:
            rows = connection.execute(
                select(registration_entries.c.id, registration_entries.c.similarity_key).where(
                    or_(
                        registration_entries.c.similarity_key.in_(list(by_key)),
                        registration_entries.c.id.in_([entry_id for entry_id, _ in items]),
                    )
                )
            ).all()
        for row in rows:
            if row.similarity_key in by_key:
                _, valid = by_key[row.similarity_key]
                return AlreadyExists(
                    f"similar entry already exists: entry {row.id} has SPIFFE ID "
                    f"{valid.spiffe_id}, parent ID {valid.parent_id} and the same selectors; "
                    "update that entry instead, or change the selectors",
                    existing_id=row.id,
                )
        for row in rows:
            return AlreadyExists(
                f"entry id {row.id} is already used; choose another id or leave it empty",
                existing_id=row.id,
            )
        return AlreadyExists(
            "the entries conflict with a change made at the same time; read them and retry"
        )

    def update_entry(
        self,
        entry_id: str,
        spec: EntrySpec,
        *,
        actor: str,
        expected_revision: int | None = None,
    ) -> RegistrationEntry:
        """Replace the writable fields of an entry and return it with its new revision.

        With `expected_revision`, the update fails with RevisionConflict if someone else
        changed the entry since that revision was read.
        """
        valid = validate_entry(spec)
        now = self._now()
        try:
            with self._write() as connection:
                head = lock_chain_head(connection, self._postgres)
                query = select(
                    registration_entries.c.revision, registration_entries.c.created_at
                ).where(registration_entries.c.id == entry_id)
                if self._postgres:
                    query = query.with_for_update()
                current = connection.execute(query).one_or_none()
                if current is None:
                    raise NotFound(
                        f"entry {entry_id} not found; list entries with 'warden entry show'"
                    )
                if expected_revision is not None and current.revision != expected_revision:
                    raise RevisionConflict(
                        f"entry {entry_id} is at revision {current.revision}, not "
                        f"{expected_revision}: it changed since it was read; read it again "
                        "and reapply the change"
                    )
                row = _entry_row(entry_id, valid, now, current.revision + 1)
                del row["id"], row["created_at"], row["last_delivered_at"]
                connection.execute(
                    update(registration_entries)
                    .where(registration_entries.c.id == entry_id)
                    .values(**row)
                )
                _delete_children(connection, entry_id)
                _insert_children(connection, [(entry_id, valid)])
                insert_entry_events(connection, [(entry_id, EntryEventKind.UPDATED)], now)
                details = _audit_details(entry_id, valid) | {"revision": current.revision + 1}
                self._audit(
                    connection,
                    head,
                    [
                        AuditEvent(
                            action="entry.update",
                            actor=actor,
                            subject=valid.spiffe_id,
                            details=details,
                        )
                    ],
                    now,
                )
                updated = load_entries(connection, [entry_id])[entry_id]
        except IntegrityError:
            raise self._explain_conflict([(entry_id, valid)]) from None
        log.info("entry updated", extra={"entry_id": entry_id, "caller": actor})
        return updated

    def delete_entry(self, entry_id: str, *, actor: str) -> RegistrationEntry:
        """Delete an entry and return it as it was."""
        now = self._now()
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            existing = load_entries(connection, [entry_id]).get(entry_id)
            if existing is None:
                raise NotFound(f"entry {entry_id} not found; it may have been deleted already")
            connection.execute(
                delete(registration_entries).where(registration_entries.c.id == entry_id)
            )
            insert_entry_events(connection, [(entry_id, EntryEventKind.DELETED)], now)
            self._audit(
                connection,
                head,
                [
                    AuditEvent(
                        action="entry.delete",
                        actor=actor,
                        subject=existing.spiffe_id,
                        details={"entry_id": entry_id, "parent_id": existing.parent_id},
                    )
                ],
                now,
            )
        log.info("entry deleted", extra={"entry_id": entry_id, "caller": actor})
        return existing

    def _audit(
        self,
        connection: Connection,
        head: ChainHead,
        events: Sequence[AuditEvent],
        now: datetime,
    ) -> None:
        append_records(connection, head, events, now, self._server_id)

    def record_deliveries(self, deliveries: Iterable[tuple[str, datetime]]) -> int:
        """Record when workloads last received entries' SVIDs; return how many distinct
        entries the batch named.

        Agents report these in batches. The latest time per entry wins, a time never moves
        backwards, and unknown entry ids (deleted since) are ignored. This is usage data, not
        configuration: it bumps no revision and writes no change event.
        """
        latest: dict[str, datetime] = {}
        for entry_id, delivered_at in deliveries:
            moment = require_aware(delivered_at, "delivery time")
            if entry_id not in latest or moment > latest[entry_id]:
                latest[entry_id] = moment
        if not latest:
            return 0
        column = registration_entries.c.last_delivered_at
        statement = (
            update(registration_entries)
            .where(registration_entries.c.id == bindparam("entry_id"))
            .where(or_(column.is_(None), column < bindparam("delivered_at", type_=UtcDateTime())))
            .values(last_delivered_at=bindparam("delivered_at", type_=UtcDateTime()))
        )
        items = [
            {"entry_id": entry_id, "delivered_at": moment}
            for entry_id, moment in sorted(latest.items())
        ]
        with self._write() as connection:
            for start in range(0, len(items), _DELIVERY_CHUNK):
                connection.execute(statement, items[start : start + _DELIVERY_CHUNK])
        return len(items)

    # --- reads ------------------------------------------------------------------------

    def get_entry(self, entry_id: str) -> RegistrationEntry:
        """Return one entry, or raise NotFound."""
        with self._read(snapshot=True) as connection:
            found = load_entries(connection, [entry_id]).get(entry_id)
        if found is None:
            raise NotFound(f"entry {entry_id} not found; list entries with 'warden entry show'")
        return found

    def get_entries(self, entry_ids: Iterable[str]) -> dict[str, RegistrationEntry]:
        """Return the current state of the entries among `entry_ids` that exist, by id.

        Ids missing from the result were deleted. Used with the entry change log.
        """
        with self._read(snapshot=True) as connection:
            return load_entries(connection, entry_ids)

    def count_entries(self) -> int:
        with self._read() as connection:
            return int(
                connection.execute(select(func.count()).select_from(registration_entries)).scalar()
                or 0
            )

    def iter_all_entries(self, batch_size: int = 5000) -> Iterator[RegistrationEntry]:
        """Yield every entry with its selectors, DNS names and federated trust domains, in
        id order, from one snapshot. Rows stream, so memory stays flat for a million entries;
        equal strings and selectors are shared between entries."""
        with self._read(snapshot=True) as connection:
            yield from stream_all_entries(connection, batch_size)

    def list_entries(
        self,
        *,
        spiffe_id: str | None = None,
        parent_id: str | None = None,
        owner: str | None = None,
        selectors: Sequence[str | Selector] | None = None,
        match: SelectorMatch = SelectorMatch.SUPERSET,
        federates_with: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[RegistrationEntry]:
        """Return entries matching every given filter, in id order.

        Page through results with `limit` and `after_id` set to the last id of the previous
        page. `match` says how `selectors` compare with each entry's (see SelectorMatch).
        """
        query = select(registration_entries.c.id).order_by(registration_entries.c.id)
        if spiffe_id is not None:
            query = query.where(registration_entries.c.spiffe_id == spiffe_id)
        if parent_id is not None:
            query = query.where(registration_entries.c.parent_id == parent_id)
        if owner is not None:
            query = query.where(registration_entries.c.owner == owner)
        if after_id is not None:
            query = query.where(registration_entries.c.id > after_id)
        if federates_with is not None:
            query = query.where(
                registration_entries.c.id.in_(
                    select(entry_federates_with.c.entry_id).where(
                        entry_federates_with.c.trust_domain == federates_with
                    )
                )
            )
        if selectors is not None:
            query = self._filter_selectors(query, selectors, match)
        if limit is not None:
            if limit <= 0:
                raise InvalidInput(f"page size {limit} must be positive")
            query = query.limit(limit)
        with self._read(snapshot=True) as connection:
            ids = list(connection.execute(query).scalars())
            found = load_entries(connection, ids)
        return [found[entry_id] for entry_id in ids if entry_id in found]

    def _filter_selectors(
        self, query: Any, values: Sequence[str | Selector], match: SelectorMatch
    ) -> Any:
        try:
            wanted = list(
                dict.fromkeys(v if isinstance(v, Selector) else Selector.parse(v) for v in values)
            )
        except SpiffeError as error:
            raise InvalidInput(f"invalid selector filter: {error}") from None
        if not wanted:
            raise InvalidInput("the selector filter is empty; give at least one type:value")
        matching = _selector_condition(wanted)
        entry_id = registration_entries.c.id
        if match is SelectorMatch.ANY:
            return query.where(entry_id.in_(select(entry_selectors.c.entry_id).where(matching)))
        has_all = (
            select(entry_selectors.c.entry_id)
            .where(matching)
            .group_by(entry_selectors.c.entry_id)
            .having(func.count() == len(wanted))
        )
        has_other = select(entry_selectors.c.entry_id).where(not_(matching))
        if match is SelectorMatch.SUPERSET:
            return query.where(entry_id.in_(has_all))
        if match is SelectorMatch.SUBSET:
            return query.where(entry_id.not_in(has_other))
        return query.where(entry_id.in_(has_all)).where(entry_id.not_in(has_other))
