"""The database secrets engine: leases of PostgreSQL users, like Vault's database engine.

A workload requests a role's credentials. The broker checks that its SPIFFE ID may lease
the role, records the lease (with the owners of the caller's registration entries), then
creates the user with `VALID UNTIL` the lease's end and returns user name, password and
lease id. The lease is stored before the user exists, so a crash in between leaves a lease
that the sweeper revokes, never a user that nothing knows about.

Leases are renewed counting from now, never past `max_ttl` counted from creation, and
revoked explicitly, by id prefix, when the last registration entry of their holder is
deleted, or by the sweeper when they expire. A failed revocation is retried with
exponential backoff, by any server sharing the datastore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from warden.credentials.database.postgres import PostgresConnection, lease_expiry
from warden.credentials.errors import (
    BackendError,
    BackendUnavailable,
    LeaseBusy,
    LeaseError,
    NotAuthorized,
    NotFoundError,
)
from warden.credentials.patterns import any_matches
from warden.credentials.settings import DatabaseSettings, RoleSettings
from warden.store.errors import InvalidInput, NotFound
from warden.store.leases import Lease, LeaseStore
from warden.store.models import AuditEvent

log = logging.getLogger(__name__)

KIND = "database"
#: How long a server may take to revoke a lease it claimed before others may take it over.
CLAIM_HOLD = timedelta(minutes=2)
#: Leases revoked per sweep; a full batch is followed by another sweep at once.
SWEEP_BATCH = 50
#: Revocations run at the same time by one sweep.
SWEEP_CONCURRENCY = 4
#: Maximum wait between two attempts to revoke a lease whose revocation failed.
MAX_RETRY_DELAY = timedelta(minutes=5)
#: Default time between sweeps when no lease is due sooner. It bounds how late another server
#: revokes the leases of a server that stopped.
DEFAULT_SWEEP_INTERVAL = timedelta(seconds=5)
#: Changes to a revoked user's objects named in its `lease.revoke` audit record; the record
#: also carries their total count.
MAX_AUDITED_CHANGES = 20


@dataclass(frozen=True)
class IssuedCredential:
    """A new database user and its lease. The password exists only here, never stored."""

    lease: Lease
    username: str
    password: str = field(repr=False)

    def to_response(self, now: datetime) -> dict[str, Any]:
        """Return the HTTP API's response body, in the shape of Vault's database engine."""
        return {
            "lease_id": self.lease.lease_id,
            "lease_duration": max(0, int((self.lease.expires_at - now).total_seconds())),
            "renewable": True,
            "expires_at": self.lease.expires_at.isoformat(),
            "max_expires_at": self.lease.max_expires_at.isoformat(),
            "data": {"username": self.username, "password": self.password},
        }


@dataclass(frozen=True)
class RevocationSummary:
    """Leases revoked by one bulk revocation, and those whose revocation failed (retried)."""

    revoked: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def new_username(role: str) -> str:
    """Return a fresh database user name for `role`, at most 63 bytes."""
    return f"w-{role[:40]}-{secrets.token_hex(8)}"


def new_lease_id(connection: str, role: str) -> str:
    """Return `database/<connection>/<role>/<random>` with 128 random bits."""
    return f"{KIND}/{connection}/{role}/{secrets.token_hex(16)}"


def new_password() -> str:
    """Return a random password of 192 bits, URL-safe Base64."""
    return secrets.token_urlsafe(24)


def write_secret_file(path: Path, value: str) -> Path:
    """Write `value` to a new temporary file beside `path`, mode 0600, and return it.

    The file gets the owner and group of `path` when this process may set them (as root),
    because an operator who runs rotate-root with sudo must not take the file away from the
    server's user.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with contextlib.suppress(FileNotFoundError):
            current = os.stat(path)
            if os.geteuid() == 0:
                os.fchown(descriptor, current.st_uid, current.st_gid)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return Path(temporary)


class DatabaseBroker:
    """Issues, renews and revokes leased PostgreSQL users; runs the expiry sweeper.

    The datastore is called from worker threads; PostgreSQL through asyncio. One broker per
    server process; several servers share the leases through the datastore.
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        store: LeaseStore,
        *,
        clock: Callable[[], datetime],
        sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._connections = {
            name: PostgresConnection(connection)
            for name, connection in settings.connections.items()
        }
        self._wake = asyncio.Event()

    def connection(self, name: str) -> PostgresConnection:
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(sorted(self._connections)) or "none"
            raise NotFoundError(
                f"database connection {name!r} is not configured (configured: {known})"
            ) from None

    def role(self, name: str) -> RoleSettings:
        try:
            return self.settings.roles[name]
        except KeyError:
            raise NotFoundError(
                f"database role {name!r} is not configured; ask an operator to add "
                f'database {{ role "{name}" {{ … }} }} to the server configuration'
            ) from None

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.close()

    # -- issue and renew -------------------------------------------------------------------------

    async def issue(
        self,
        role_name: str,
        spiffe_id: str,
        owners: Sequence[str],
        *,
        actor: str,
        ttl: timedelta | None = None,
    ) -> IssuedCredential:
        """Create a user of `role_name` for the workload `spiffe_id` and lease it.

        `ttl` defaults to the role's `default_ttl` and may not exceed its `max_ttl`. Raises
        NotAuthorized when the SPIFFE ID may not lease the role or has no owner.
        """
        role = self.role(role_name)
        if not any_matches(role.allowed_spiffe_ids, spiffe_id):
            raise NotAuthorized(
                f"{spiffe_id} may not lease database role {role_name!r}; add it to the role's "
                "allowed_spiffe_ids"
            )
        if not owners:
            raise NotAuthorized(
                f"{spiffe_id} is carried by no registration entry, so a lease would have no "
                "owner; register the workload with an owner first"
            )
        requested = ttl or role.default_ttl
        if requested <= timedelta(0) or requested > role.max_ttl:
            raise LeaseError(
                f"database role {role_name!r}: TTL {requested} must be positive and at most "
                f"max_ttl {role.max_ttl}"
            )
        connection = self.connection(role.connection)
        now = self._clock()
        expires_at = lease_expiry(now, requested)
        max_expires_at = lease_expiry(now, role.max_ttl)
        username = new_username(role.name)
        password = new_password()
        lease_id = new_lease_id(role.connection, role.name)

        try:
            lease = await asyncio.to_thread(
                self._store.create_lease,
                lease_id=lease_id,
                kind=KIND,
                spiffe_id=spiffe_id,
                owners=owners,
                details={"connection": role.connection, "role": role.name, "username": username},
                expires_at=expires_at,
                max_expires_at=max_expires_at,
                actor=actor,
            )
        except InvalidInput as error:
            # The lease's end is rounded down to the second, so a TTL of a second or two
            # can end before the lease is stored.
            raise LeaseError(
                f"database role {role_name!r}: TTL {requested} is too short to store a lease "
                f"({error}); request a few seconds more"
            ) from None
        try:
            await connection.create_user(
                role.creation_statements, username, password, lease.expires_at
            )
        except LeaseError as error:
            log.error(
                "creating a database user failed; revoking its lease",
                extra={"lease_id": lease_id, "spiffe_id": spiffe_id, "error": str(error)},
            )
            with contextlib.suppress(LeaseError):
                await self.revoke(lease_id, actor=actor, reason="creation_failed")
            raise
        await self._check_not_revoked(lease_id, spiffe_id, connection, username)
        self._wake.set()
        log.info(
            "database credentials issued",
            extra={
                "lease_id": lease_id,
                "spiffe_id": spiffe_id,
                "user": username,
                "expires_at": lease.expires_at.isoformat(),
            },
        )
        return IssuedCredential(lease, username, password)

    async def _check_not_revoked(
        self, lease_id: str, spiffe_id: str, connection: PostgresConnection, username: str
    ) -> None:
        """Drop a new user whose lease a revocation claimed while the user was being created.

        Such a revocation may have looked for the user before it existed and marked the lease
        revoked, so nothing else would ever drop the user. A revocation that claims the lease
        after this check finds the user, because it was created before.
        """
        current = await asyncio.to_thread(self._store.get_lease, lease_id)
        if current.revoked_at is None and current.claimed_by is None:
            return
        log.warning(
            "lease revoked while its database user was created; dropping the user",
            extra={"lease_id": lease_id, "spiffe_id": spiffe_id, "user": username},
        )
        try:
            await connection.revoke_user(username)
        except LeaseError as error:
            log.error(
                "dropping the user of a lease revoked during creation failed; drop it by hand",
                extra={"lease_id": lease_id, "user": username, "error": str(error)},
            )
        raise LeaseBusy(
            f"lease {lease_id} was revoked while its database user was being created; "
            "request new credentials"
        )

    async def renew(
        self,
        lease_id: str,
        *,
        actor: str,
        spiffe_id: str | None = None,
        increment: timedelta | None = None,
    ) -> Lease:
        """Extend a lease to now plus `increment` (the role's default TTL), within max_ttl.

        With `spiffe_id`, only the lease's holder may renew it; None is for administrators.
        """
        lease = await self._get(lease_id, spiffe_id)
        role = self.settings.roles.get(str(lease.details.get("role", "")))
        default = role.default_ttl if role is not None else timedelta(hours=1)
        step = increment or default
        if step <= timedelta(0):
            raise LeaseError(f"lease {lease_id}: increment {step} must be positive")
        try:
            renewed = await asyncio.to_thread(
                self._store.renew_lease, lease_id, lease_expiry(self._clock(), step), actor=actor
            )
        except InvalidInput as error:
            raise LeaseError(str(error)) from None
        connection = self.connection(str(lease.details["connection"]))
        await connection.renew_user(str(lease.details["username"]), renewed.expires_at)
        log.info(
            "lease renewed",
            extra={"lease_id": lease_id, "expires_at": renewed.expires_at.isoformat()},
        )
        return renewed

    async def _get(self, lease_id: str, spiffe_id: str | None) -> Lease:
        try:
            lease = await asyncio.to_thread(self._store.get_lease, lease_id)
        except NotFound as error:
            raise NotFoundError(str(error)) from None
        if lease.kind != KIND:
            raise NotFoundError(f"lease {lease_id} is not a database lease")
        if spiffe_id is not None and lease.spiffe_id != spiffe_id:
            # The same error as for an unknown lease, so that lease ids cannot be probed.
            raise NotFoundError(f"lease {lease_id} not found")
        return lease

    # -- revoke --------------------------------------------------------------------------------

    async def revoke(
        self, lease_id: str, *, actor: str, spiffe_id: str | None = None, reason: str = "revoked"
    ) -> Lease:
        """Revoke one lease now; revoking a revoked lease returns it unchanged.

        With `spiffe_id`, only the lease's holder may revoke it. Raises LeaseBusy when
        another server is revoking it, and the backend's error when revocation fails (the
        lease is then retried by the sweepers).
        """
        lease = await self._get(lease_id, spiffe_id)
        if lease.revoked_at is not None:
            return lease
        claimed = await asyncio.to_thread(self._store.claim_lease, lease_id, hold=CLAIM_HOLD)
        if claimed is None:
            current = await asyncio.to_thread(self._store.get_lease, lease_id)
            if current.revoked_at is not None:
                return current
            raise LeaseBusy(f"lease {lease_id} is being revoked by server {current.claimed_by}")
        return await self._revoke_claimed(claimed, reason=reason, actor=actor)

    async def revoke_prefix(
        self, prefix: str, *, actor: str, reason: str = "revoked_by_prefix"
    ) -> RevocationSummary:
        """Revoke every unrevoked lease whose id starts with `prefix`."""
        if not prefix.startswith(f"{KIND}/"):
            raise LeaseError(
                f"prefix {prefix!r} must start with {KIND}/, for example {KIND}/orders/ or "
                f"{KIND}/orders/reader/"
            )
        return await self._revoke_all(actor=actor, reason=reason, prefix=prefix)

    async def revoke_holder(self, spiffe_id: str, *, actor: str, reason: str) -> RevocationSummary:
        """Revoke every unrevoked lease held by `spiffe_id`."""
        return await self._revoke_all(actor=actor, reason=reason, spiffe_id=spiffe_id)

    async def _revoke_all(
        self, *, actor: str, reason: str, prefix: str | None = None, spiffe_id: str | None = None
    ) -> RevocationSummary:
        revoked: list[str] = []
        failed: list[str] = []
        while True:
            batch = await asyncio.to_thread(
                self._store.claim_leases,
                hold=CLAIM_HOLD,
                limit=SWEEP_BATCH,
                prefix=prefix,
                spiffe_id=spiffe_id,
            )
            if not batch:
                break
            done, errors = await self._revoke_batch(batch, reason=reason, actor=actor)
            revoked += done
            failed += errors
            if errors:
                # Failed leases are now due and will be retried by the sweepers.
                break
        return RevocationSummary(tuple(revoked), tuple(failed))

    async def _revoke_batch(
        self, batch: Sequence[Lease], *, reason: str, actor: str
    ) -> tuple[list[str], list[str]]:
        limit = asyncio.Semaphore(SWEEP_CONCURRENCY)
        revoked: list[str] = []
        failed: list[str] = []

        async def revoke_one(lease: Lease) -> None:
            async with limit:
                try:
                    await self._revoke_claimed(lease, reason=reason, actor=actor)
                    revoked.append(lease.lease_id)
                except LeaseError:
                    failed.append(lease.lease_id)

        await asyncio.gather(*(revoke_one(lease) for lease in batch))
        return revoked, failed

    async def _revoke_claimed(self, lease: Lease, *, reason: str, actor: str) -> Lease:
        """Revoke the user of a lease this server claimed, and record the outcome."""
        try:
            connection = self.connection(str(lease.details["connection"]))
            report = await connection.revoke_user(str(lease.details["username"]))
        except (LeaseError, KeyError) as error:
            message = str(error) if isinstance(error, LeaseError) else f"missing detail {error}"
            delay = min(timedelta(seconds=2 ** min(lease.attempts, 16)), MAX_RETRY_DELAY)
            await asyncio.to_thread(
                self._store.release_claim,
                lease.lease_id,
                error=message,
                retry_at=self._clock() + delay,
                actor=actor,
            )
            log.error(
                "revoking a lease failed; it will be retried",
                extra={
                    "lease_id": lease.lease_id,
                    "error": message,
                    "attempts": lease.attempts + 1,
                    "retry_in": delay.total_seconds(),
                },
            )
            if isinstance(error, LeaseError):
                raise
            raise BackendError(message) from None
        try:
            revoked = await asyncio.to_thread(
                self._store.finish_revocation,
                lease.lease_id,
                reason=reason,
                actor=actor,
                details={
                    "user": str(lease.details.get("username", "")),
                    "user_existed": report.existed,
                    "sessions_terminated": report.sessions_terminated,
                    "databases": list(report.databases),
                    # Bounded, because a leased user chooses how many objects it creates.
                    "disarmed": list(report.disarmed[:MAX_AUDITED_CHANGES]),
                    "disarmed_count": len(report.disarmed),
                },
            )
        except InvalidInput as error:
            raise LeaseBusy(str(error)) from None
        log.info(
            "lease revoked",
            extra={
                "lease_id": lease.lease_id,
                "spiffe_id": lease.spiffe_id,
                "reason": reason,
                "sessions": report.sessions_terminated,
            },
        )
        return revoked

    # -- the sweeper ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Make the sweeper look for due leases now."""
        self._wake.set()

    async def sweep(self) -> int:
        """Revoke due leases, a batch at a time; return how many were revoked."""
        total = 0
        while True:
            batch = await asyncio.to_thread(
                self._store.claim_leases, hold=CLAIM_HOLD, limit=SWEEP_BATCH, due=True
            )
            if not batch:
                return total
            done, _ = await self._revoke_batch(batch, reason="expired", actor="server")
            total += len(done)
            if len(batch) < SWEEP_BATCH:
                return total

    async def run_sweeper(self) -> None:
        """Revoke leases as they expire, until cancelled.

        The sweeper sleeps until the next lease is due, at most `sweep_interval`, and wakes
        early when this server issues or renews a lease. The first sweep runs at once, so
        leases that expired while the server was stopped are revoked at start, and so are
        those whose revocation this server left unfinished when it stopped.
        """
        log.info("lease sweeper started", extra={"interval": self._sweep_interval.total_seconds()})
        try:
            released = await asyncio.to_thread(self._store.release_own_claims)
        except Exception as error:  # The claims lapse by themselves; the sweeper must start.
            log.error("releasing this server's earlier claims failed", extra={"error": str(error)})
        else:
            if released:
                log.info(
                    "resuming revocations this server left unfinished",
                    extra={"count": released},
                )
        while True:
            self._wake.clear()
            try:
                revoked = await self.sweep()
                if revoked:
                    log.info("expired leases revoked", extra={"count": revoked})
                now = self._clock()
                upcoming = await asyncio.to_thread(self._store.next_lease_expiry, now)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # The sweeper must outlive a datastore outage.
                log.error("lease sweep failed; retrying", extra={"error": str(error)})
                upcoming = None
                now = self._clock()
            delay = self._sweep_interval.total_seconds()
            if upcoming is not None:
                delay = min(delay, max((upcoming - now).total_seconds(), 0.0) + 0.01)
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for loses a cancellation that
            # arrives as the event is set, and the sweeper would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    # -- the management password ---------------------------------------------------------------

    async def rotate_root(self, connection_name: str, *, actor: str) -> AuditEvent:
        """Replace a connection's management password with a new random one.

        The new password is written to a temporary file beside `password_file` before the
        change, and moved over it after, so it is never lost: if moving fails, the error
        names the temporary file. Returns the audit record to append.
        """
        connection = self.connection(connection_name)
        path = connection.settings.password_file
        if path is None:
            raise LeaseError(
                f"database connection {connection_name!r} has no password_file; rotate-root "
                "needs one to store the new password, because a password in the configuration "
                "file would stay valid forever"
            )
        password = new_password()
        temporary = write_secret_file(path, password)
        try:
            role = await connection.rotate_password(password)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        try:
            os.replace(temporary, path)
        except OSError as error:
            raise BackendError(
                f"database connection {connection_name!r}: the password was changed but "
                f"{path} could not be replaced ({error.strerror}); the new password is in "
                f"{temporary}: move it there by hand"
            ) from None
        log.info(
            "management password rotated",
            extra={"connection": connection_name, "user": role, "path": str(path)},
        )
        return AuditEvent(
            action="database.rotate_root",
            actor=actor,
            subject=f"{KIND}/{connection_name}",
            details={"connection": connection_name, "user": role},
        )


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "DatabaseBroker",
    "IssuedCredential",
    "RevocationSummary",
]
