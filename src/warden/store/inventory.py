"""A read-only view of the registry for governance: entries, agents, leases, audit records.

    reader = open_registry_reader("/var/lib/warden/server/datastore.sqlite3")
    for entry in reader.entries():
        ...

It needs no server: it opens the datastore read-only (SQLite `mode=ro`, PostgreSQL
read-only transactions), never migrates, and returns frozen values with timezone-aware UTC
datetimes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import URL

from warden.store.datastore import Datastore
from warden.store.engine import (
    check_known_revision,
    create_datastore_engine,
    current_revision,
    head_revision,
)
from warden.store.errors import SchemaError
from warden.store.models import AuditRecord
from warden.store.urls import describe_url, to_sqlalchemy_url

log = logging.getLogger(__name__)

_AGENT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A registration entry in the form governance reads; selectors are `type:value` strings."""

    id: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[str, ...]
    owner: str
    description: str
    admin: bool
    downstream: bool
    dns_names: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    last_delivered_at: datetime | None
    x509_svid_ttl: int
    jwt_svid_ttl: int


@dataclass(frozen=True, slots=True)
class RegistryAgent:
    """An attested agent; `serial` is its current SVID serial (empty once banned)."""

    spiffe_id: str
    attestation_type: str
    owner: str
    serial: str
    svid_expires_at: datetime | None
    created_at: datetime
    last_seen_at: datetime | None
    banned: bool
    selectors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RegistryLease:
    """A brokered credential's lease; `detail` holds kind-specific, non-secret facts."""

    lease_id: str
    kind: str
    spiffe_id: str
    owners: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    detail: Mapping[str, Any] = field(default_factory=dict)


class RegistryReader:
    """Read-only access to one datastore. Close it, or use it as a context manager."""

    def __init__(self, store: Datastore) -> None:
        self._store = store

    def entries(self) -> Iterator[RegistryEntry]:
        """Yield every registration entry, streamed in id order."""
        for entry in self._store.iter_all_entries():
            yield RegistryEntry(
                id=entry.id,
                spiffe_id=entry.spiffe_id,
                parent_id=entry.parent_id,
                selectors=tuple(str(s) for s in entry.selectors),
                owner=entry.owner,
                description=entry.description,
                admin=entry.admin,
                downstream=entry.downstream,
                dns_names=entry.dns_names,
                created_at=entry.created_at,
                updated_at=entry.updated_at,
                expires_at=entry.expires_at,
                last_delivered_at=entry.last_delivered_at,
                x509_svid_ttl=entry.x509_svid_ttl,
                jwt_svid_ttl=entry.jwt_svid_ttl,
            )

    def agents(self) -> Iterator[RegistryAgent]:
        """Yield every attested agent, banned ones included, in SPIFFE ID order."""
        after: str | None = None
        while True:
            page = self._store.list_attested_nodes(after_id=after, limit=_AGENT_PAGE)
            for node in page:
                yield RegistryAgent(
                    spiffe_id=node.spiffe_id,
                    attestation_type=node.attestation_type,
                    owner=node.owner,
                    serial=node.serial_number,
                    svid_expires_at=node.expires_at,
                    created_at=node.created_at,
                    last_seen_at=node.last_seen_at,
                    banned=node.banned,
                    selectors=tuple(str(s) for s in node.selectors),
                )
            if len(page) < _AGENT_PAGE:
                return
            after = page[-1].spiffe_id

    def leases(self) -> Iterator[RegistryLease]:
        """Yield the leases of brokered credentials, revoked ones included, in id order."""
        # A datastore written by a Warden older than the leases migration has no table.
        if not inspect(self._store.engine).has_table("leases"):
            return
        for lease in self._store.iter_leases():
            yield RegistryLease(
                lease_id=lease.lease_id,
                kind=lease.kind,
                spiffe_id=lease.spiffe_id,
                owners=lease.owners,
                created_at=lease.created_at,
                expires_at=lease.expires_at,
                revoked_at=lease.revoked_at,
                detail=dict(lease.details),
            )

    def audit_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
    ) -> Iterator[AuditRecord]:
        """Yield audit records in chain order, optionally within [since, until) or by action."""
        return self._store.iter_audit(since=since, until=until, action=action)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> RegistryReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_registry_reader(url_or_sqlite_path: str | Path | URL) -> RegistryReader:
    """Open a datastore read-only: a SQLite file path or any datastore URL.

    Raises DatabaseUnavailable when it cannot be reached and SchemaError when it is not a
    Warden datastore or was written by a newer Warden.
    """
    url = to_sqlalchemy_url(url_or_sqlite_path)
    engine = create_datastore_engine(url, read_only=True, pool_size=2, max_overflow=2)
    try:
        revision = current_revision(engine)
        if revision is None:
            raise SchemaError(
                f"{describe_url(url)} is not a Warden datastore (it has no schema revision); "
                "give the server's datastore.sqlite3 or its PostgreSQL URL"
            )
        if revision != head_revision():
            # Older schemas still have every column read here; newer unknown ones may not.
            check_known_revision(revision, engine)
    except Exception:
        engine.dispose()
        raise
    return RegistryReader(Datastore(engine))
