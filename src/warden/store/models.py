"""Value types the datastore takes and returns.

Datetimes are aware and in UTC. SPIFFE IDs are kept as their canonical strings: they were
validated with `SpiffeId.parse` when written, and parsing a million of them again at every
load would cost seconds for nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warden.spiffe import Selector


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """The fields of a registration entry that an operator writes.

    `selectors` are `type:value` strings or `Selector` values; `federates_with` are trust
    domain names (`example.org` or `spiffe://example.org`). TTLs are seconds, and 0 means the
    server's default. `owner` is required: the person or team answerable for the identity.
    """

    spiffe_id: str
    parent_id: str
    selectors: Sequence[str | Selector]
    owner: str
    x509_svid_ttl: int = 0
    jwt_svid_ttl: int = 0
    dns_names: Sequence[str] = ()
    federates_with: Sequence[str] = ()
    admin: bool = False
    downstream: bool = False
    hint: str = ""
    expires_at: datetime | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class RegistrationEntry:
    """A stored registration entry.

    `revision` starts at 1 and grows by one at every update. `last_delivered_at` is when an
    agent last reported that a workload received this entry's SVID through the Workload API
    (not when an SVID was signed), or None if it never was.
    """

    id: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[Selector, ...]
    owner: str
    x509_svid_ttl: int
    jwt_svid_ttl: int
    dns_names: tuple[str, ...]
    federates_with: tuple[str, ...]
    admin: bool
    downstream: bool
    hint: str
    expires_at: datetime | None
    description: str
    revision: int
    created_at: datetime
    updated_at: datetime
    last_delivered_at: datetime | None

    def to_spec(self) -> EntrySpec:
        """Return the writable fields, to change some and pass to `update_entry`."""
        return EntrySpec(
            spiffe_id=self.spiffe_id,
            parent_id=self.parent_id,
            selectors=self.selectors,
            owner=self.owner,
            x509_svid_ttl=self.x509_svid_ttl,
            jwt_svid_ttl=self.jwt_svid_ttl,
            dns_names=self.dns_names,
            federates_with=self.federates_with,
            admin=self.admin,
            downstream=self.downstream,
            hint=self.hint,
            expires_at=self.expires_at,
            description=self.description,
        )


class EntryEventKind(enum.StrEnum):
    """What happened to an entry."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class EntryEvent:
    """One row of the entry change log. Followers re-read the entry to learn its new state."""

    id: int
    entry_id: str
    kind: EntryEventKind
    created_at: datetime


class SelectorMatch(enum.StrEnum):
    """How `list_entries` compares an entry's selectors with the requested set, as SPIRE does."""

    EXACT = "exact"  # the same set
    SUBSET = "subset"  # the entry's selectors are all in the requested set
    SUPERSET = "superset"  # the entry has all the requested selectors, maybe more
    ANY = "any"  # the entry has at least one of the requested selectors


@dataclass(frozen=True, slots=True)
class AttestedNode:
    """An agent that attested its node.

    `serial_number` is the agent's current SVID serial (hex, empty once banned);
    `new_serial_number` is set during renewal until the agent uses its new SVID.
    """

    spiffe_id: str
    attestation_type: str
    serial_number: str
    expires_at: datetime | None
    new_serial_number: str
    new_expires_at: datetime | None
    owner: str
    banned: bool
    can_reattest: bool
    selectors: tuple[Selector, ...]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A join token as stored: never the token itself, only its first characters."""

    prefix: str
    owner: str
    alias_spiffe_id: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An audit record to append.

    `actor` is who acted: a SPIFFE ID, `unix:<user>` for an operator on the admin socket, or
    `server`. `action` is a dotted name such as `entry.create` or `svid.x509.sign`. `subject`
    is the SPIFFE ID or entry id acted on. `details` is JSON-serialisable and must never
    contain a secret. `time` defaults to the moment of the append.
    """

    action: str
    actor: str
    subject: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    time: datetime | None = None
    server_id: str = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit record with its place in the hash chain."""

    seq: int
    time: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    server_id: str
    prev_hash: str
    record_hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of checking the audit log's hash chain.

    `length` is the number of records read. When `ok` is False, `first_bad_seq` is the first
    record that was changed, removed or moved, and `problem` says how.
    """

    ok: bool
    length: int
    head_seq: int
    first_bad_seq: int | None = None
    problem: str | None = None
