"""Conversions between datastore values, the entry cache and the server API's messages."""

from __future__ import annotations

from datetime import UTC, datetime

from warden.api.server.v1 import types_pb2
from warden.server.entry_cache import CachedEntry, make_entry
from warden.store.models import AttestedNode, EntrySpec, RegistrationEntry


def seconds(moment: datetime | None) -> int:
    """Unix seconds of an aware datetime; 0 for None."""
    return int(moment.timestamp()) if moment is not None else 0


# The largest Unix time a datetime holds (9999-12-31T23:59:59Z).
MAX_UNIX_SECONDS = 253_402_300_799


def from_seconds(value: int) -> datetime | None:
    """An aware datetime from Unix seconds; None for 0. Raises ValueError out of range."""
    if not value:
        return None
    if value < 0 or value > MAX_UNIX_SECONDS:
        raise ValueError(
            f"time {value} is out of range: give Unix seconds between 1 and {MAX_UNIX_SECONDS}"
        )
    return datetime.fromtimestamp(value, tz=UTC)


def cached_entry(entry: RegistrationEntry) -> CachedEntry:
    return make_entry(
        id=entry.id,
        spiffe_id=entry.spiffe_id,
        parent_id=entry.parent_id,
        selectors=(f"{s.type}:{s.value}" for s in entry.selectors),
        x509_svid_ttl=entry.x509_svid_ttl,
        jwt_svid_ttl=entry.jwt_svid_ttl,
        dns_names=entry.dns_names,
        federates_with=entry.federates_with,
        admin=entry.admin,
        downstream=entry.downstream,
        hint=entry.hint,
        expires_at=seconds(entry.expires_at),
        owner=entry.owner,
        description=entry.description,
        created_at=seconds(entry.created_at),
        updated_at=seconds(entry.updated_at),
        revision=entry.revision,
    )


def _selector_messages(selectors: tuple[str, ...]) -> list[types_pb2.Selector]:
    result = []
    for text in selectors:
        selector_type, _, value = text.partition(":")
        result.append(types_pb2.Selector(type=selector_type, value=value))
    return result


def cached_entry_message(entry: CachedEntry) -> types_pb2.Entry:
    return types_pb2.Entry(
        id=entry.id,
        spiffe_id=entry.spiffe_id,
        parent_id=entry.parent_id,
        selectors=_selector_messages(entry.selectors),
        x509_svid_ttl=entry.x509_svid_ttl,
        jwt_svid_ttl=entry.jwt_svid_ttl,
        dns_names=entry.dns_names,
        federates_with=entry.federates_with,
        admin=entry.admin,
        downstream=entry.downstream,
        hint=entry.hint,
        expires_at=entry.expires_at,
        owner=entry.owner,
        description=entry.description,
        created_at=entry.created_at,
        updated_at=entry.updated_at,
        revision=entry.revision,
    )


def entry_message(entry: RegistrationEntry) -> types_pb2.Entry:
    return types_pb2.Entry(
        id=entry.id,
        spiffe_id=entry.spiffe_id,
        parent_id=entry.parent_id,
        selectors=[types_pb2.Selector(type=s.type, value=s.value) for s in entry.selectors],
        x509_svid_ttl=entry.x509_svid_ttl,
        jwt_svid_ttl=entry.jwt_svid_ttl,
        dns_names=entry.dns_names,
        federates_with=entry.federates_with,
        admin=entry.admin,
        downstream=entry.downstream,
        hint=entry.hint,
        expires_at=seconds(entry.expires_at),
        owner=entry.owner,
        description=entry.description,
        created_at=seconds(entry.created_at),
        updated_at=seconds(entry.updated_at),
        revision=entry.revision,
        last_delivered_at=seconds(entry.last_delivered_at),
    )


def entry_spec(message: types_pb2.Entry) -> EntrySpec:
    return EntrySpec(
        spiffe_id=message.spiffe_id,
        parent_id=message.parent_id,
        selectors=[f"{s.type}:{s.value}" for s in message.selectors],
        owner=message.owner,
        x509_svid_ttl=message.x509_svid_ttl,
        jwt_svid_ttl=message.jwt_svid_ttl,
        dns_names=list(message.dns_names),
        federates_with=list(message.federates_with),
        admin=message.admin,
        downstream=message.downstream,
        hint=message.hint,
        expires_at=from_seconds(message.expires_at),
        description=message.description,
    )


def agent_message(node: AttestedNode) -> types_pb2.Agent:
    return types_pb2.Agent(
        spiffe_id=node.spiffe_id,
        attestation_type=node.attestation_type,
        serial=node.serial_number,
        svid_expires_at=seconds(node.expires_at),
        selectors=[types_pb2.Selector(type=s.type, value=s.value) for s in node.selectors],
        banned=node.banned,
        owner=node.owner,
        created_at=seconds(node.created_at),
        last_seen_at=seconds(node.last_seen_at),
        can_reattest=node.can_reattest,
    )
