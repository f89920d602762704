"""Join tokens: single-use secrets that let an agent attest its node once.

The table stores SHA-256 of each token, never the token, so a copy of the database cannot
be used to attest. Tokens are UUIDs (122 random bits), as SPIRE's are. Consuming is one
conditional UPDATE (`... WHERE used_at IS NULL AND expires_at > now`), so when two servers
receive the same token at the same moment the database lets exactly one of them succeed.
Used tokens are kept, so a second use is reported as "already used", not "unknown".
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from warden.spiffe import SpiffeError, SpiffeId
from warden.store._base import StoreBase
from warden.store.audit import append_records, format_time, lock_chain_head
from warden.store.columns import require_aware
from warden.store.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    TokenInvalid,
    TokenProblem,
)
from warden.store.models import AuditEvent, JoinToken
from warden.store.schema import join_tokens
from warden.store.validation import reserved_id_problem

log = logging.getLogger(__name__)

#: Characters of a token kept in the clear, for listings and messages (32 of 122 bits).
PREFIX_LENGTH = 8

#: SPIRE's default join token lifetime.
DEFAULT_TOKEN_TTL = timedelta(seconds=600)

GENERATE_HINT = "generate a new one with 'warden token generate'"


def token_hash(token: str) -> str:
    """Return the hex SHA-256 under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _shown(token: str) -> str:
    return f"{token[:PREFIX_LENGTH]}…"


def _to_token(row: object) -> JoinToken:
    return JoinToken(
        prefix=row.prefix,  # type: ignore[attr-defined]
        owner=row.owner,  # type: ignore[attr-defined]
        alias_spiffe_id=row.alias_spiffe_id,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
        used_at=row.used_at,  # type: ignore[attr-defined]
        used_by=row.used_by,  # type: ignore[attr-defined]
    )


class TokenStore(StoreBase):
    """Join tokens."""

    def create_join_token(
        self,
        *,
        owner: str,
        actor: str,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
        alias_spiffe_id: str | None = None,
        token: str | None = None,
    ) -> tuple[str, JoinToken]:
        """Create a token and return its value (shown once, never stored) and its record.

        `owner` becomes the owner of the agent that joins with the token. `alias_spiffe_id`
        requests an alias entry for that agent. A caller-chosen `token` is
        accepted for SPIRE compatibility; it must be hard to guess.
        """
        owner = owner.strip() if isinstance(owner, str) else ""
        if any(ord(character) < 0x20 or ord(character) == 0x7F for character in owner):
            raise InvalidInput(
                f"join token: owner {owner!r} contains a control character; name a person or team"
            )
        if not owner:
            raise InvalidInput(
                "join token: owner is required; pass -owner <person or team> (it owns the "
                "agent that joins with the token)"
            )
        if ttl <= timedelta(0):
            raise InvalidInput(f"join token: ttl {ttl} must be positive, for example 600s")
        if alias_spiffe_id is not None:
            try:
                alias_spiffe_id = str(SpiffeId.parse(alias_spiffe_id))
            except SpiffeError as error:
                raise InvalidInput(f"join token: invalid alias SPIFFE ID: {error}") from None
            problem = reserved_id_problem(alias_spiffe_id)
            if problem is not None:
                raise InvalidInput(f"join token: invalid alias: {problem}")
        value = token if token is not None else str(uuid.uuid4())
        if len(value) < 16 or not value.isprintable() or " " in value:
            raise InvalidInput(
                "join token: a chosen token must be at least 16 printable characters without "
                "spaces; leave it empty to get a random one"
            )
        now = self._now()
        expires_at = now + ttl
        row: dict[str, Any] = {
            "token_hash": token_hash(value),
            "prefix": value[:PREFIX_LENGTH],
            "owner": owner,
            "alias_spiffe_id": alias_spiffe_id,
            "created_at": now,
            "expires_at": expires_at,
            "used_at": None,
            "used_by": None,
        }
        try:
            with self._write() as connection:
                head = lock_chain_head(connection, self._postgres)
                connection.execute(join_tokens.insert().values(**row))
                append_records(
                    connection,
                    head,
                    [
                        AuditEvent(
                            action="token.create",
                            actor=actor,
                            subject=alias_spiffe_id or "",
                            details={
                                "token_prefix": row["prefix"],
                                "owner": owner,
                                "expires_at": format_time(expires_at),
                            },
                        )
                    ],
                    now,
                    self._server_id,
                )
        except IntegrityError:
            raise AlreadyExists(
                f"join token {_shown(value)} already exists; choose another value"
            ) from None
        log.info(
            "join token created",
            extra={"token_prefix": row["prefix"], "identity": owner, "caller": actor},
        )
        record = JoinToken(
            prefix=value[:PREFIX_LENGTH],
            owner=owner,
            alias_spiffe_id=alias_spiffe_id,
            created_at=now,
            expires_at=expires_at,
            used_at=None,
            used_by=None,
        )
        return value, record

    def consume_join_token(
        self, token: str, *, now: datetime | None = None, used_by: str | None = None
    ) -> JoinToken:
        """Mark a token used and return it; exactly one of concurrent callers succeeds.

        Raises TokenInvalid with reason UNKNOWN, USED or EXPIRED otherwise. `used_by` records
        who used it (the agent's SPIFFE ID or the server's id).
        """
        moment = require_aware(now, "now") if now is not None else self._now()
        hashed = token_hash(token)
        with self._write() as connection:
            row = connection.execute(
                update(join_tokens)
                .where(join_tokens.c.token_hash == hashed)
                .where(join_tokens.c.used_at.is_(None))
                .where(join_tokens.c.expires_at > moment)
                .values(used_at=moment, used_by=used_by)
                .returning(*join_tokens.c)
            ).one_or_none()
            if row is not None:
                return _to_token(row)
            existing = connection.execute(
                select(join_tokens).where(join_tokens.c.token_hash == hashed)
            ).one_or_none()
        if existing is None:
            raise TokenInvalid(
                f"join token {_shown(token)} is unknown; check for a typo or {GENERATE_HINT}",
                TokenProblem.UNKNOWN,
            )
        if existing.used_at is not None:
            raise TokenInvalid(
                f"join token {_shown(token)} was already used at "
                f"{format_time(existing.used_at)}; each token attests one agent, so "
                f"{GENERATE_HINT}",
                TokenProblem.USED,
            )
        raise TokenInvalid(
            f"join token {_shown(token)} expired at {format_time(existing.expires_at)}; "
            f"{GENERATE_HINT}",
            TokenProblem.EXPIRED,
        )

    def list_join_tokens(self, *, include_used: bool = False) -> list[JoinToken]:
        """Return tokens, newest first; unused ones only unless `include_used`."""
        query = select(join_tokens).order_by(join_tokens.c.created_at.desc())
        if not include_used:
            query = query.where(join_tokens.c.used_at.is_(None))
        with self._read() as connection:
            return [_to_token(row) for row in connection.execute(query)]

    def delete_join_token(self, token: str) -> None:
        """Delete an unused token, so that it can no longer attest."""
        with self._write() as connection:
            result = connection.execute(
                delete(join_tokens).where(join_tokens.c.token_hash == token_hash(token))
            )
        if not result.rowcount:
            raise NotFound(f"join token {_shown(token)} not found")

    def prune_join_tokens(self, expired_before: datetime) -> int:
        """Delete tokens, used or not, that expired before `expired_before`."""
        with self._write() as connection:
            result = connection.execute(
                delete(join_tokens).where(join_tokens.c.expires_at < expired_before)
            )
        return result.rowcount or 0
