"""The audit log: an append-only hash chain of who did what.

Each record stores `record_hash = SHA-256(bytes.fromhex(prev_hash) || canonical)`, where
`canonical` is the UTF-8 JSON of the record's sequence number, time, actor, action, subject,
details and server id, with sorted keys and no spaces. The first record's `prev_hash` is 64
zeros. Because the sequence number is hashed, a record moved to another place breaks the
chain as surely as a changed one; the `audit_head` row stores the last sequence number and
hash, so records removed from the end are detected too.

Appends lock `audit_head` (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are
serialised already), so servers sharing one database extend one linear chain. Triggers reject
UPDATE and DELETE of `audit_log`. On PostgreSQL the table's owner can still disable them, which
is why the server should run as a role with only INSERT and SELECT on the table (see
warden.store.roles); on SQLite anyone who can write the file can drop them, and verification
is what detects the change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from warden.store._base import StoreBase
from warden.store.columns import require_aware
from warden.store.errors import InvalidInput
from warden.store.models import AuditEvent, AuditRecord, AuditVerification
from warden.store.schema import audit_head, audit_log

ZERO_HASH = "0" * 64

_ACTION_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
# Detail keys that would hold a secret; an audit record names a key id or prefix instead.
_SECRET_KEYS = frozenset(
    {"token", "password", "secret", "private_key", "client_secret", "secret_access_key"}
)


def format_time(moment: datetime) -> str:
    """Render a time as the chain hashes it: UTC, microseconds, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_record(
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    server_id: str,
) -> bytes:
    """Serialise a record the way its hash covers it."""
    document = {
        "seq": seq,
        "time": format_time(time),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "server_id": server_id,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """Return the hex SHA-256 of the previous hash's bytes followed by `canonical`."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


def _check_event(event: AuditEvent) -> None:
    if not _ACTION_RE.fullmatch(event.action) or len(event.action) > 64:
        raise InvalidInput(
            f"invalid audit action {event.action!r}: use dotted lowercase words such as "
            "'entry.create', at most 64 characters"
        )
    if not event.actor.strip():
        raise InvalidInput(
            f"audit record {event.action}: actor is required (a SPIFFE ID, unix:<user> or 'server')"
        )
    leaked = _SECRET_KEYS.intersection(k.lower() for k in event.details)
    if leaked:
        raise InvalidInput(
            f"audit record {event.action}: details key {sorted(leaked)[0]!r} would store a "
            "secret; record a key id, fingerprint or prefix instead"
        )


@dataclass(slots=True)
class ChainHead:
    """The chain's last sequence number and hash, as read under the head lock."""

    seq: int
    record_hash: str


def lock_chain_head(connection: Connection, postgres: bool) -> ChainHead:
    """Read the chain head, locking it until the transaction ends."""
    query = select(audit_head.c.seq, audit_head.c.record_hash).where(audit_head.c.id == 1)
    if postgres:
        query = query.with_for_update()
    row = connection.execute(query).one()
    return ChainHead(seq=row.seq, record_hash=row.record_hash)


def append_records(
    connection: Connection,
    head: ChainHead,
    events: Sequence[AuditEvent],
    now: datetime,
    server_id: str,
) -> list[int]:
    """Append `events` after `head` inside the caller's transaction; return their seqs."""
    rows: list[dict[str, Any]] = []
    for event in events:
        _check_event(event)
        time = require_aware(event.time, "audit time") if event.time is not None else now
        details = dict(event.details)
        seq = head.seq + 1
        origin = event.server_id or server_id
        try:
            canonical = canonical_record(
                seq, time, event.actor, event.action, event.subject, details, origin
            )
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                f"audit record {event.action}: details are not JSON-serialisable: {error}"
            ) from None
        record_hash = chain_hash(head.record_hash, canonical)
        rows.append(
            {
                "seq": seq,
                "recorded_at": time,
                "actor": event.actor,
                "action": event.action,
                "subject": event.subject,
                "details": json.dumps(details, sort_keys=True, ensure_ascii=False),
                "server_id": origin,
                "prev_hash": head.record_hash,
                "record_hash": record_hash,
            }
        )
        head.seq, head.record_hash = seq, record_hash
    if rows:
        connection.execute(audit_log.insert(), rows)
        connection.execute(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(seq=head.seq, record_hash=head.record_hash, updated_at=now)
        )
    return [row["seq"] for row in rows]


def _record_problem(row: Any, expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    """Return the first bad seq and how a stored row breaks the chain, or None if it fits."""
    if row.seq > expected_seq:
        missing = (
            f"record {expected_seq} is missing"
            if row.seq == expected_seq + 1
            else f"records {expected_seq} to {row.seq - 1} are missing"
        )
        return expected_seq, f"{missing} (removed from the log)"
    if row.seq < expected_seq:
        return row.seq, f"record {row.seq} appears out of order after record {expected_seq - 1}"
    if row.prev_hash != prev_hash:
        if row.seq == 1:
            return 1, "record 1 was changed or moved: it does not start the chain"
        return row.seq - 1, (
            f"record {row.seq - 1} was changed or replaced: record {row.seq} does not chain to it"
        )
    try:
        details = json.loads(row.details)
        canonical = canonical_record(
            row.seq, row.recorded_at, row.actor, row.action, row.subject, details, row.server_id
        )
    except (TypeError, ValueError):
        return row.seq, f"record {row.seq} was changed: its details are not valid JSON"
    if chain_hash(prev_hash, canonical) != row.record_hash:
        return row.seq, f"record {row.seq} was changed: its content does not match its hash"
    return None


class AuditLogStore(StoreBase):
    """Appending to, reading and verifying the audit log."""

    def append_audit(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append `events` in one transaction and return their sequence numbers.

        Callers that sign at high rates should batch: one call with a thousand events costs
        one lock and one commit.
        """
        if not events:
            return []
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            return append_records(connection, head, events, self._now(), self._server_id)

    def audit_head(self) -> tuple[int, str]:
        """Return the chain head: the last sequence number and its hash."""
        with self._read() as connection:
            row = connection.execute(
                select(audit_head.c.seq, audit_head.c.record_hash).where(audit_head.c.id == 1)
            ).one()
        return row.seq, row.record_hash

    def iter_audit(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[AuditRecord]:
        """Yield audit records in chain order (or newest first), filtered by time range
        [since, until) and exact action, actor or subject. An action ending in `.*` matches
        its prefix. With `newest_first` and `limit`, only the newest records are read."""
        order = audit_log.c.seq.desc() if newest_first else audit_log.c.seq
        query = select(audit_log).where(audit_log.c.seq > after_seq).order_by(order)
        if since is not None:
            query = query.where(audit_log.c.recorded_at >= since)
        if until is not None:
            query = query.where(audit_log.c.recorded_at < until)
        if action is not None:
            if action.endswith(".*"):
                query = query.where(audit_log.c.action.startswith(action[:-1], autoescape=True))
            else:
                query = query.where(audit_log.c.action == action)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if subject is not None:
            query = query.where(audit_log.c.subject == subject)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as connection:
            result = connection.execution_options(stream_results=True, yield_per=2000).execute(
                query
            )
            for row in result:
                yield AuditRecord(
                    seq=row.seq,
                    time=row.recorded_at,
                    actor=row.actor,
                    action=row.action,
                    subject=row.subject,
                    details=json.loads(row.details),
                    server_id=row.server_id,
                    prev_hash=row.prev_hash,
                    record_hash=row.record_hash,
                )

    def verify_audit_log(self) -> AuditVerification:
        """Walk the whole chain and report the first record changed, removed or moved."""
        with self._read(snapshot=True) as connection:
            head = connection.execute(
                select(audit_head.c.seq, audit_head.c.record_hash).where(audit_head.c.id == 1)
            ).one_or_none()
            if head is None:
                return AuditVerification(
                    ok=False,
                    length=0,
                    head_seq=0,
                    first_bad_seq=None,
                    problem="the chain head row is missing; the audit log cannot be trusted",
                )
            result = connection.execution_options(stream_results=True, yield_per=5000).execute(
                select(audit_log).order_by(audit_log.c.seq)
            )
            expected_seq, prev_hash, length = 1, ZERO_HASH, 0
            for row in result:
                broken = _record_problem(row, expected_seq, prev_hash)
                if broken is not None:
                    return AuditVerification(
                        ok=False,
                        length=length,
                        head_seq=head.seq,
                        first_bad_seq=broken[0],
                        problem=broken[1],
                    )
                length += 1
                expected_seq, prev_hash = row.seq + 1, row.record_hash
        last_seq = expected_seq - 1
        if head.seq > last_seq:
            return AuditVerification(
                ok=False,
                length=length,
                head_seq=head.seq,
                first_bad_seq=last_seq + 1,
                problem=(
                    f"records {last_seq + 1} to {head.seq} were removed from the end of the log "
                    f"(the chain head says {head.seq} records, the log ends at {last_seq})"
                ),
            )
        if head.seq < last_seq or head.record_hash != prev_hash:
            return AuditVerification(
                ok=False,
                length=length,
                head_seq=head.seq,
                first_bad_seq=min(head.seq, last_seq) or None,
                problem=(
                    f"the chain head (record {head.seq}) does not match the log's last record "
                    f"({last_seq}); the head or the last record was changed"
                ),
            )
        return AuditVerification(ok=True, length=length, head_seq=head.seq)
