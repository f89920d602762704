"""Leases of brokered credentials, and the replay cache of exchanged JWTs.

A lease records one credential that Warden handed out and must take back: who holds it
(`spiffe_id`), who is accountable for it (`owners`), until when it is valid (`expires_at`, never past
`max_expires_at`) and, once taken back, when and why (`revoked_at`, `revoke_reason`). No
secret is ever stored; `details` holds only facts such as the database user's name.

Revocation happens outside the datastore (a database server drops a role), so it runs in
three steps: claim the lease in a short transaction, revoke the credential, then mark the
lease revoked. A claim names the server (`claimed_by`) and lapses at `claimed_until`, so
servers sharing one database never revoke a lease twice, and a lease claimed by a server
that crashed is taken over once the claim lapses. On PostgreSQL, claiming due leases
selects them `FOR UPDATE SKIP LOCKED`, so concurrent sweepers split the work instead of
queueing behind each other; SQLite serialises writers already.

Every lease event (create, renew, revoke, failed revocation) appends its audit record in the
same transaction as the change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from warden.store._base import StoreBase
from warden.store.audit import append_records, format_time, lock_chain_head
from warden.store.columns import require_aware
from warden.store.errors import AlreadyExists, InvalidInput, NotFound
from warden.store.models import AuditEvent
from warden.store.schema import jti_replay, leases

log = logging.getLogger(__name__)

#: Maximum length of a lease id, the size of its column.
MAX_LEASE_ID_LENGTH = 255


class LeaseState:
    """Values of `Lease.state`."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Lease:
    """A stored lease. `details` never contains a secret."""

    lease_id: str
    kind: str
    spiffe_id: str
    owners: tuple[str, ...]
    details: Mapping[str, Any]
    server_id: str
    created_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None

    def state(self, now: datetime) -> str:
        """Return `active`, `expired` (due for revocation) or `revoked`."""
        if self.revoked_at is not None:
            return LeaseState.REVOKED
        return LeaseState.ACTIVE if self.expires_at > now else LeaseState.EXPIRED


def _to_lease(row: Any) -> Lease:
    return Lease(
        lease_id=row.lease_id,
        kind=row.kind,
        spiffe_id=row.spiffe_id,
        owners=tuple(json.loads(row.owners)),
        details=json.loads(row.details),
        server_id=row.server_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_expires_at=row.max_expires_at,
        revoked_at=row.revoked_at,
        revoke_reason=row.revoke_reason,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )


def replay_key(trust_domain: str, jti: str) -> str:
    """Return the key under which a JWT's `jti` is remembered: SHA-256 of issuer and jti."""
    return hashlib.sha256(f"{trust_domain}\0{jti}".encode()).hexdigest()


def _lease_event(action: str, actor: str, lease: Lease, **details: Any) -> AuditEvent:
    return AuditEvent(
        action=action,
        actor=actor,
        subject=lease.spiffe_id,
        details={"lease_id": lease.lease_id, "kind": lease.kind, **details},
    )


class LeaseStore(StoreBase):
    """Leases of brokered credentials and the `jti` replay cache."""

    # -- leases ---------------------------------------------------------------------------------

    def create_lease(
        self,
        *,
        lease_id: str,
        kind: str,
        spiffe_id: str,
        owners: Sequence[str],
        details: Mapping[str, Any],
        expires_at: datetime,
        max_expires_at: datetime,
        actor: str,
    ) -> Lease:
        """Store a new lease and its `lease.create` audit record in one transaction.

        `owners` must name at least one person or team. Raises AlreadyExists for a lease id
        in use and InvalidInput for an id that is too long, no owner or an expiry not after
        now.
        """
        now = self._now()
        expires_at = require_aware(expires_at, "expires_at")
        max_expires_at = require_aware(max_expires_at, "max_expires_at")
        if not lease_id or len(lease_id) > MAX_LEASE_ID_LENGTH:
            raise InvalidInput(
                f"lease id {lease_id[:40]!r}: must be 1 to {MAX_LEASE_ID_LENGTH} characters"
            )
        cleaned_owners = tuple(dict.fromkeys(owner.strip() for owner in owners if owner.strip()))
        if not cleaned_owners:
            raise InvalidInput(
                f"lease {lease_id}: no owner; a lease is owned by the owners of the entries "
                f"that carry {spiffe_id}"
            )
        if expires_at <= now or max_expires_at < expires_at:
            raise InvalidInput(
                f"lease {lease_id}: expiry {format_time(expires_at)} must be after now and at "
                f"most the maximum {format_time(max_expires_at)}"
            )
        lease = Lease(
            lease_id=lease_id,
            kind=kind,
            spiffe_id=spiffe_id,
            owners=cleaned_owners,
            details=dict(details),
            server_id=self._server_id,
            created_at=now,
            expires_at=expires_at,
            max_expires_at=max_expires_at,
        )
        row = {
            "lease_id": lease_id,
            "kind": kind,
            "spiffe_id": spiffe_id,
            "owners": json.dumps(list(cleaned_owners)),
            "details": json.dumps(dict(details), sort_keys=True),
            "server_id": self._server_id,
            "created_at": now,
            "expires_at": expires_at,
            "max_expires_at": max_expires_at,
            "attempts": 0,
        }
        event = _lease_event(
            "lease.create",
            actor,
            lease,
            owners=list(cleaned_owners),
            expires_at=format_time(expires_at),
            max_expires_at=format_time(max_expires_at),
            **dict(details),
        )
        try:
            with self._write() as connection:
                head = lock_chain_head(connection, self._postgres)
                connection.execute(leases.insert().values(**row))
                append_records(connection, head, [event], now, self._server_id)
        except IntegrityError:
            raise AlreadyExists(f"lease {lease_id} already exists") from None
        return lease

    def get_lease(self, lease_id: str) -> Lease:
        """Return a lease; raise NotFound when no lease has that id."""
        with self._read() as connection:
            row = connection.execute(
                select(leases).where(leases.c.lease_id == lease_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"lease {lease_id} not found; list leases with 'warden creds db list'")
        return _to_lease(row)

    def list_leases(
        self,
        *,
        prefix: str | None = None,
        spiffe_id: str | None = None,
        include_revoked: bool = False,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Lease]:
        """Return leases in id order, filtered by id prefix and holder.

        With `after`, only leases whose id sorts after it, so that a caller pages through
        the leases by passing the last id of the previous page.
        """
        query = select(leases).order_by(leases.c.lease_id)
        if prefix:
            query = query.where(leases.c.lease_id.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(leases.c.lease_id > after)
        if spiffe_id is not None:
            query = query.where(leases.c.spiffe_id == spiffe_id)
        if not include_revoked:
            query = query.where(leases.c.revoked_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as connection:
            return [_to_lease(row) for row in connection.execute(query)]

    def iter_leases(self, batch_size: int = 2000) -> Iterator[Lease]:
        """Yield every lease, revoked ones included, streamed in id order."""
        query = select(leases).order_by(leases.c.lease_id)
        with self._read() as connection:
            result = connection.execution_options(
                stream_results=True, yield_per=batch_size
            ).execute(query)
            for row in result:
                yield _to_lease(row)

    def renew_lease(self, lease_id: str, expires_at: datetime, *, actor: str) -> Lease:
        """Move an active lease's expiry to `expires_at`, capped at its maximum.

        Only a lease that has not expired, is not revoked and is not being revoked can be
        renewed. Raises NotFound for an unknown id and InvalidInput otherwise.
        """
        now = self._now()
        expires_at = require_aware(expires_at, "expires_at")
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            current = connection.execute(
                select(leases).where(leases.c.lease_id == lease_id)
            ).one_or_none()
            if current is None:
                raise NotFound(f"lease {lease_id} not found")
            lease = _to_lease(current)
            new_expiry = min(expires_at, lease.max_expires_at)
            problem = self._renew_problem(lease, new_expiry, now)
            if problem:
                raise InvalidInput(f"lease {lease_id} cannot be renewed: {problem}")
            # The conditions are checked again in the UPDATE, because a sweeper may claim the
            # lease between the SELECT and here.
            changed = connection.execute(
                update(leases)
                .where(leases.c.lease_id == lease_id)
                .where(self._claimable(now))
                .where(leases.c.expires_at > now)
                .values(expires_at=new_expiry)
            ).rowcount
            if not changed:
                raise InvalidInput(
                    f"lease {lease_id} cannot be renewed: it is being revoked; request a new "
                    "credential"
                )
            append_records(
                connection,
                head,
                [
                    _lease_event(
                        "lease.renew",
                        actor,
                        lease,
                        previous_expires_at=format_time(lease.expires_at),
                        expires_at=format_time(new_expiry),
                    )
                ],
                now,
                self._server_id,
            )
        return replace(lease, expires_at=new_expiry)

    @staticmethod
    def _renew_problem(lease: Lease, new_expiry: datetime, now: datetime) -> str:
        if lease.revoked_at is not None:
            return f"it was revoked at {format_time(lease.revoked_at)}; request a new credential"
        if lease.expires_at <= now:
            return f"it expired at {format_time(lease.expires_at)}; request a new credential"
        if lease.claimed_until is not None and lease.claimed_until > now:
            return "it is being revoked; request a new credential"
        if new_expiry <= now:
            return (
                f"it reached its maximum lifetime at {format_time(lease.max_expires_at)}; "
                "request a new credential"
            )
        return ""

    # -- claims and revocation ------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        return and_(
            leases.c.revoked_at.is_(None),
            or_(leases.c.claimed_until.is_(None), leases.c.claimed_until <= now),
        )

    def _claim(
        self, connection: Connection, lease_ids: Sequence[str], now: datetime, hold: timedelta
    ) -> list[Lease]:
        if not lease_ids:
            return []
        # A claimed lease ends now: if this revocation fails, the lease is due and the
        # sweepers retry it.
        rows = connection.execute(
            update(leases)
            .where(leases.c.lease_id.in_(lease_ids))
            .where(self._claimable(now))
            .values(
                claimed_by=self._server_id,
                claimed_until=now + hold,
                expires_at=case(
                    (leases.c.expires_at > now, literal(now, leases.c.expires_at.type)),
                    else_=leases.c.expires_at,
                ),
            )
            .returning(*leases.c)
        ).all()
        return sorted((_to_lease(row) for row in rows), key=lambda lease: lease.expires_at)

    def claim_lease(self, lease_id: str, *, hold: timedelta) -> Lease | None:
        """Claim one unrevoked lease for revocation by this server for at most `hold`.

        Returns None when the lease is revoked already or another server holds a claim on
        it; raises NotFound for an unknown id.
        """
        now = self._now()
        with self._write() as connection:
            claimed = self._claim(connection, [lease_id], now, hold)
            if claimed:
                return claimed[0]
            exists = connection.execute(
                select(leases.c.lease_id).where(leases.c.lease_id == lease_id)
            ).one_or_none()
        if exists is None:
            raise NotFound(f"lease {lease_id} not found")
        return None

    def claim_leases(
        self,
        *,
        hold: timedelta,
        limit: int,
        due: bool = False,
        prefix: str | None = None,
        spiffe_id: str | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` unrevoked leases for revocation by this server.

        `due` selects leases that have expired and whose retry time has come; `prefix` and
        `spiffe_id` narrow by lease id and holder. Leases locked or claimed by another server
        are skipped, so servers sweeping together never claim the same lease.
        """
        now = self._now()
        query = select(leases.c.lease_id).where(self._claimable(now))
        if due:
            query = query.where(leases.c.expires_at <= now).where(
                or_(leases.c.next_attempt_at.is_(None), leases.c.next_attempt_at <= now)
            )
        if prefix:
            query = query.where(leases.c.lease_id.startswith(prefix, autoescape=True))
        if spiffe_id is not None:
            query = query.where(leases.c.spiffe_id == spiffe_id)
        query = query.order_by(leases.c.expires_at).limit(limit)
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        with self._write() as connection:
            lease_ids = list(connection.execute(query).scalars())
            return self._claim(connection, lease_ids, now, hold)

    def release_own_claims(self) -> int:
        """Release the claims this server id holds; return how many leases were released.

        Call it at start, before this server claims anything: a claim under this server's id
        was left by an earlier run that stopped in the middle of a revocation. Its lease
        ended when it was claimed, so the sweepers revoke it at once instead of waiting for
        the claim to lapse.
        """
        with self._write() as connection:
            result = connection.execute(
                update(leases)
                .where(leases.c.claimed_by == self._server_id)
                .where(leases.c.revoked_at.is_(None))
                .values(claimed_by=None, claimed_until=None)
            )
        return result.rowcount or 0

    def finish_revocation(
        self, lease_id: str, *, reason: str, actor: str, details: Mapping[str, Any] | None = None
    ) -> Lease:
        """Mark a lease this server claimed as revoked, with its `lease.revoke` audit record.

        Raises InvalidInput when this server no longer holds the claim (it lapsed and another
        server took the lease over), so the caller knows its work may be repeated.
        """
        now = self._now()
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            row = connection.execute(
                update(leases)
                .where(leases.c.lease_id == lease_id)
                .where(leases.c.revoked_at.is_(None))
                .where(leases.c.claimed_by == self._server_id)
                .values(
                    revoked_at=now,
                    revoke_reason=reason,
                    claimed_by=None,
                    claimed_until=None,
                    next_attempt_at=None,
                    last_error=None,
                )
                .returning(*leases.c)
            ).one_or_none()
            if row is None:
                raise InvalidInput(
                    f"lease {lease_id}: this server no longer holds the revocation claim; "
                    "another server took it over or revoked it"
                )
            lease = _to_lease(row)
            append_records(
                connection,
                head,
                [
                    _lease_event(
                        "lease.revoke",
                        actor,
                        lease,
                        reason=reason,
                        owners=list(lease.owners),
                        expires_at=format_time(lease.expires_at),
                        **dict(details or {}),
                    )
                ],
                now,
                self._server_id,
            )
        return lease

    def release_claim(
        self, lease_id: str, *, error: str, retry_at: datetime, actor: str
    ) -> Lease | None:
        """Give up a claim after a failed revocation, and schedule the next attempt.

        Records the error (which must not contain a secret) and a `lease.revoke_failed`
        audit record. Returns None when this server no longer held the claim.
        """
        now = self._now()
        retry_at = require_aware(retry_at, "retry_at")
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            row = connection.execute(
                update(leases)
                .where(leases.c.lease_id == lease_id)
                .where(leases.c.revoked_at.is_(None))
                .where(leases.c.claimed_by == self._server_id)
                .values(
                    claimed_by=None,
                    claimed_until=None,
                    attempts=leases.c.attempts + 1,
                    next_attempt_at=retry_at,
                    last_error=error[:2000],
                )
                .returning(*leases.c)
            ).one_or_none()
            if row is None:
                return None
            lease = _to_lease(row)
            append_records(
                connection,
                head,
                [
                    _lease_event(
                        "lease.revoke_failed",
                        actor,
                        lease,
                        error=error[:500],
                        attempts=lease.attempts,
                        retry_at=format_time(retry_at),
                    )
                ],
                now,
                self._server_id,
            )
        return lease

    def next_lease_expiry(self, after: datetime | None = None) -> datetime | None:
        """Return the earliest expiry among unrevoked leases, or None when there are none.

        With `after`, only expiries later than it count, so a sweeper can sleep until the
        next lease is due while overdue ones wait for their retry time.
        """
        query = select(func.min(leases.c.expires_at)).where(leases.c.revoked_at.is_(None))
        if after is not None:
            query = query.where(leases.c.expires_at > require_aware(after, "after"))
        with self._read() as connection:
            result: datetime | None = connection.execute(query).scalar_one_or_none()
        return result

    def prune_leases(self, revoked_before: datetime) -> int:
        """Delete leases revoked before `revoked_before`; their audit records remain."""
        with self._write() as connection:
            result = connection.execute(
                delete(leases)
                .where(leases.c.revoked_at.is_not(None))
                .where(leases.c.revoked_at < require_aware(revoked_before, "revoked_before"))
            )
        return result.rowcount or 0

    # -- jti replay cache -----------------------------------------------------------------------

    def remember_jti(self, key: str, expires_at: datetime) -> bool:
        """Remember a token's `jti` until `expires_at`; return False if it is known already.

        `key` comes from `replay_key`. A remembered key whose token has expired is taken
        over, so the cache never rejects a token because of a stale row.
        """
        return self.remember_jtis([(key, expires_at)])[0]

    def remember_jtis(self, items: Sequence[tuple[str, datetime]]) -> list[bool]:
        """Remember several `(key, expires_at)` in one transaction, in order.

        Returns, for each item, False when its key was known already, including a key that
        an earlier item of the same call added.
        """
        now = self._now()
        dialect = postgresql if self._postgres else sqlite
        results: list[bool] = []
        with self._write() as connection:
            for key, expires_at in items:
                statement = dialect.insert(jti_replay).values(
                    key=key, expires_at=require_aware(expires_at, "expires_at")
                )
                statement = statement.on_conflict_do_update(
                    index_elements=[jti_replay.c.key],
                    set_={"expires_at": statement.excluded.expires_at},
                    where=jti_replay.c.expires_at <= now,
                ).returning(jti_replay.c.key)
                # RETURNING, because the driver reports no row count for INSERT on PostgreSQL.
                results.append(connection.execute(statement).one_or_none() is not None)
        return results

    def prune_jti(self) -> int:
        """Delete remembered `jti` values whose tokens have expired."""
        with self._write() as connection:
            result = connection.execute(
                delete(jti_replay).where(jti_replay.c.expires_at <= self._now())
            )
        return result.rowcount or 0
