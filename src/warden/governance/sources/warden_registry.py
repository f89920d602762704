"""Warden's own registry: registration entries, agents and credential leases.

The datastore exposes a read interface, `warden.store.inventory.open_registry_reader`. This
connector needs only the small `RegistryReader` protocol below, so tests and other stores
can hand in their own reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from warden.governance.model import Identity, Inventory, Kind, Provider
from warden.governance.workspace import Workspace

SOURCE = "warden_registry"


class RegistryEntryLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def spiffe_id(self) -> str: ...
    @property
    def parent_id(self) -> str: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def admin(self) -> bool: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def last_delivered_at(self) -> datetime | None: ...


class RegistryAgentLike(Protocol):
    @property
    def spiffe_id(self) -> str: ...
    @property
    def attestation_type(self) -> str: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def serial(self) -> str | None: ...
    @property
    def svid_expires_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def last_seen_at(self) -> datetime | None: ...
    @property
    def banned(self) -> bool: ...


class RegistryLeaseLike(Protocol):
    @property
    def lease_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def spiffe_id(self) -> str: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...


class AuditRecordLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def server_id(self) -> str: ...


class RegistryReader(Protocol):
    """The read interface of `warden.store.inventory.open_registry_reader`."""

    def entries(self) -> Iterable[RegistryEntryLike]: ...

    def agents(self) -> Iterable[RegistryAgentLike]: ...

    def leases(self) -> Iterable[RegistryLeaseLike]: ...


def open_reader(url_or_path: str) -> RegistryReader:
    """Open the datastore's read interface; raise RuntimeError when it is not installed."""
    try:
        from warden.store.inventory import open_registry_reader
    except ImportError as error:
        raise RuntimeError(
            "cannot read a Warden datastore: warden.store.inventory is not available in this "
            f"installation ({error})"
        ) from error
    return open_registry_reader(url_or_path)


def add_registry(inventory: Inventory, reader: RegistryReader, label: str) -> None:
    """Add entries and agents as identities, and leases as their credentials."""
    for entry in reader.entries():
        identity = _identity(inventory, entry.spiffe_id, Kind.WARDEN_ENTRY)
        identity.created_at = entry.created_at
        identity.last_used_at = _latest(identity.last_used_at, entry.last_delivered_at)
        identity.facts["entry_id"] = entry.id
        identity.facts["parent_id"] = entry.parent_id
        identity.facts["registry"] = label
        if entry.expires_at is not None:
            identity.facts["entry_expires_at"] = entry.expires_at
        if entry.admin:
            identity.facts["warden_admin"] = True
        if entry.owner:
            identity.owner, identity.owner_source = entry.owner, "registry"
        if entry.description:
            identity.facts["description"] = entry.description
    for agent in reader.agents():
        identity = _identity(inventory, agent.spiffe_id, Kind.WARDEN_AGENT)
        identity.created_at = agent.created_at
        identity.last_used_at = _latest(identity.last_used_at, agent.last_seen_at)
        identity.enabled = not agent.banned
        identity.facts["attestation_type"] = agent.attestation_type
        identity.facts["registry"] = label
        if agent.owner:
            identity.owner, identity.owner_source = agent.owner, "registry"
        if agent.serial:
            credential = identity.credential(f"svid:{agent.serial}", "x509_svid")
            credential.expires_at = agent.svid_expires_at
            credential.created_at = agent.created_at
    for lease in reader.leases():
        identity = _identity(inventory, lease.spiffe_id, Kind.WARDEN_ENTRY)
        credential = identity.credential(f"lease:{lease.lease_id}", f"lease:{lease.kind}")
        credential.created_at = lease.created_at
        credential.expires_at = lease.expires_at
        credential.active = lease.revoked_at is None
        credential.long_lived = lease.expires_at is None
        identity.last_used_at = _latest(identity.last_used_at, lease.created_at)


def _identity(inventory: Inventory, spiffe_id: str, kind: Kind) -> Identity:
    name = spiffe_id.split("://", 1)[-1]
    return inventory.identity(spiffe_id, kind, Provider.WARDEN, name, SOURCE)


def _latest(current: datetime | None, other: datetime | None) -> datetime | None:
    if current is None or (other is not None and other > current):
        return other
    return current


def add_audit_records(workspace: Workspace, reader: RegistryReader, label: str) -> int:
    """Copy the registry's audit log into the workspace's activity; return the rows added.

    Only records newer than the newest one already in the workspace are read, so a second
    run costs in proportion to the new records.
    """
    read = getattr(reader, "audit_records", None)
    if read is None:
        return 0
    connection = workspace.connection
    row = connection.execute(
        "SELECT max(event_time) FROM activity WHERE source = 'warden_audit' AND file = ?", [label]
    ).fetchone()
    since = row[0] if row else None
    # Records at the newest stored instant are read again (`since` is inclusive); their ids
    # tell which of them are already stored.
    known = (
        {
            event_id
            for (event_id,) in connection.execute(
                "SELECT event_id FROM activity WHERE source = 'warden_audit' AND file = ? "
                "AND event_time = ?",
                [label, since],
            ).fetchall()
        }
        if since
        else set()
    )
    records: Iterable[AuditRecordLike] = read(since=since) if since else read()
    rows = []
    for record in records:
        event_id = f"{record.server_id}:{record.seq}"
        if event_id in known:
            continue
        rows.append(
            (
                "warden_audit",
                event_id,
                record.time,
                record.actor,
                record.actor,
                "warden",
                record.action,
                record.subject,
                label,
            )
        )
    if rows:
        workspace.connection.executemany(
            "INSERT INTO activity (source, event_id, event_time, identity, principal, service, "
            "operation, resource, file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)
