"""Attested nodes (agents): attestation, SVID serials, selectors, eviction and bans.

Eviction deletes the node so that the agent can attest again; a ban keeps the row, clears
its serials and makes every later attestation of that SPIFFE ID fail until it is evicted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, or_, select, update

from warden.spiffe import Selector, SpiffeError, SpiffeId
from warden.store._base import StoreBase
from warden.store.audit import append_records, lock_chain_head
from warden.store.columns import UtcDateTime, require_aware
from warden.store.errors import AgentBanned, AlreadyExists, InvalidInput, NotFound
from warden.store.models import AttestedNode, AuditEvent
from warden.store.schema import attested_nodes, node_selectors

log = logging.getLogger(__name__)


def _parse_node_selectors(spiffe_id: str, values: Iterable[str | Selector]) -> list[Selector]:
    try:
        parsed = [v if isinstance(v, Selector) else Selector.parse(v) for v in values]
    except SpiffeError as error:
        raise InvalidInput(f"agent {spiffe_id}: {error}") from None
    return list(dict.fromkeys(parsed))


def _check_agent_id(spiffe_id: str) -> str:
    try:
        return str(SpiffeId.parse(spiffe_id))
    except SpiffeError as error:
        raise InvalidInput(f"invalid agent ID: {error}") from None


def _load_nodes(connection: Connection, ids: Sequence[str]) -> list[AttestedNode]:
    if not ids:
        return []
    rows = connection.execute(
        select(attested_nodes).where(attested_nodes.c.spiffe_id.in_(ids))
    ).all()
    selectors: dict[str, list[Selector]] = {}
    for row in connection.execute(
        select(node_selectors)
        .where(node_selectors.c.spiffe_id.in_(ids))
        .order_by(node_selectors.c.spiffe_id, node_selectors.c.position)
    ):
        selectors.setdefault(row.spiffe_id, []).append(Selector(row.type, row.value))
    by_id = {
        row.spiffe_id: AttestedNode(
            spiffe_id=row.spiffe_id,
            attestation_type=row.attestation_type,
            serial_number=row.serial_number,
            expires_at=row.expires_at,
            new_serial_number=row.new_serial_number,
            new_expires_at=row.new_expires_at,
            owner=row.owner,
            banned=row.banned,
            can_reattest=row.can_reattest,
            selectors=tuple(selectors.get(row.spiffe_id, ())),
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_seen_at=row.last_seen_at,
        )
        for row in rows
    }
    return [by_id[spiffe_id] for spiffe_id in ids if spiffe_id in by_id]


def _replace_selectors(connection: Connection, spiffe_id: str, selectors: list[Selector]) -> None:
    connection.execute(delete(node_selectors).where(node_selectors.c.spiffe_id == spiffe_id))
    if selectors:
        connection.execute(
            node_selectors.insert(),
            [
                {"spiffe_id": spiffe_id, "position": index, "type": s.type, "value": s.value}
                for index, s in enumerate(selectors)
            ],
        )


class NodeStore(StoreBase):
    """Attested nodes."""

    def record_attestation(
        self,
        spiffe_id: str,
        *,
        attestation_type: str,
        serial_number: str,
        expires_at: datetime,
        owner: str,
        selectors: Iterable[str | Selector] = (),
        can_reattest: bool = False,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> AttestedNode:
        """Store a successful node attestation and its audit record, and return the node.

        An agent seen before may attest again only when its row allows re-attestation
        (`can_reattest`, set by attestors such as x509pop). A banned agent gets AgentBanned;
        an agent that may not re-attest gets AlreadyExists, which says how to evict it.
        """
        spiffe_id = _check_agent_id(spiffe_id)
        owner = owner.strip()
        if not owner:
            raise InvalidInput(
                f"agent {spiffe_id}: owner is required; generate its join token with "
                "'warden token generate -owner <person or team>'"
            )
        parsed = _parse_node_selectors(spiffe_id, selectors)
        expires_at = require_aware(expires_at, "agent SVID expiry")
        now = self._now()
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            query = select(attested_nodes).where(attested_nodes.c.spiffe_id == spiffe_id)
            if self._postgres:
                query = query.with_for_update()
            existing = connection.execute(query).one_or_none()
            values = {
                "attestation_type": attestation_type,
                "serial_number": serial_number,
                "expires_at": expires_at,
                "new_serial_number": "",
                "new_expires_at": None,
                "owner": owner,
                "can_reattest": can_reattest,
                "updated_at": now,
                "last_seen_at": now,
            }
            if existing is None:
                connection.execute(
                    attested_nodes.insert().values(
                        spiffe_id=spiffe_id, banned=False, created_at=now, **values
                    )
                )
            elif existing.banned:
                raise AgentBanned(
                    f"agent {spiffe_id} is banned; an operator must evict it with "
                    f"'warden agent evict -spiffeID {spiffe_id}' before it can attest again"
                )
            elif not existing.can_reattest:
                raise AlreadyExists(
                    f"agent {spiffe_id} has already attested and its attestation type "
                    f"{existing.attestation_type} does not allow attesting again; evict it with "
                    f"'warden agent evict -spiffeID {spiffe_id}' to let it re-attest",
                    existing_id=spiffe_id,
                )
            else:
                connection.execute(
                    update(attested_nodes)
                    .where(attested_nodes.c.spiffe_id == spiffe_id)
                    .values(**values)
                )
            _replace_selectors(connection, spiffe_id, parsed)
            append_records(
                connection,
                head,
                [
                    AuditEvent(
                        action="agent.attest",
                        actor=actor,
                        subject=spiffe_id,
                        details={
                            "attestation_type": attestation_type,
                            "serial": serial_number,
                            "owner": owner,
                            "reattested": existing is not None,
                        }
                        | (details or {}),
                    )
                ],
                now,
                self._server_id,
            )
            node = _load_nodes(connection, [spiffe_id])[0]
        log.info(
            "agent attested",
            extra={"agent_id": spiffe_id, "serial": serial_number, "caller": actor},
        )
        return node

    def get_attested_node(self, spiffe_id: str) -> AttestedNode:
        """Return one agent, or raise NotFound."""
        with self._read(snapshot=True) as connection:
            found = _load_nodes(connection, [spiffe_id])
        if not found:
            raise NotFound(f"agent {spiffe_id} not found; list agents with 'warden agent list'")
        return found[0]

    def find_attested_node(self, spiffe_id: str) -> AttestedNode | None:
        """Return one agent, or None when it has not attested (or was evicted)."""
        with self._read(snapshot=True) as connection:
            found = _load_nodes(connection, [spiffe_id])
        return found[0] if found else None

    def list_attested_nodes(
        self,
        *,
        attestation_type: str | None = None,
        banned: bool | None = None,
        owner: str | None = None,
        expires_before: datetime | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[AttestedNode]:
        """Return agents matching every given filter, ordered by SPIFFE ID."""
        query = select(attested_nodes.c.spiffe_id).order_by(attested_nodes.c.spiffe_id)
        if attestation_type is not None:
            query = query.where(attested_nodes.c.attestation_type == attestation_type)
        if banned is not None:
            query = query.where(attested_nodes.c.banned == banned)
        if owner is not None:
            query = query.where(attested_nodes.c.owner == owner)
        if expires_before is not None:
            query = query.where(attested_nodes.c.expires_at < expires_before)
        if after_id is not None:
            query = query.where(attested_nodes.c.spiffe_id > after_id)
        if limit is not None:
            query = query.limit(limit)
        with self._read(snapshot=True) as connection:
            ids = list(connection.execute(query).scalars())
            return _load_nodes(connection, ids)

    def count_attested_nodes(self) -> int:
        """Return how many agents are attested (banned ones included)."""
        with self._read() as connection:
            return int(
                connection.execute(select(func.count()).select_from(attested_nodes)).scalar() or 0
            )

    def update_node_svid(
        self,
        spiffe_id: str,
        *,
        serial_number: str | None = None,
        expires_at: datetime | None = None,
        new_serial_number: str | None = None,
        new_expires_at: datetime | None = None,
    ) -> AttestedNode:
        """Set an agent's current or pending SVID serial and expiry (renewal, activation).

        Only the arguments given change; pass "" and None to clear the pending serial.
        """
        values: dict[str, Any] = {"updated_at": self._now()}
        if serial_number is not None:
            values["serial_number"] = serial_number
            values["expires_at"] = expires_at
        if new_serial_number is not None:
            values["new_serial_number"] = new_serial_number
            values["new_expires_at"] = new_expires_at
        with self._write() as connection:
            result = connection.execute(
                update(attested_nodes)
                .where(attested_nodes.c.spiffe_id == spiffe_id)
                .where(attested_nodes.c.banned.is_(False))
                .values(**values)
            )
            if not result.rowcount:
                raise NotFound(f"agent {spiffe_id} not found or banned; it must attest again")
            return _load_nodes(connection, [spiffe_id])[0]

    def set_node_selectors(self, spiffe_id: str, selectors: Iterable[str | Selector]) -> None:
        """Replace the node selectors of an agent (attestors may refresh them)."""
        parsed = _parse_node_selectors(spiffe_id, selectors)
        with self._write() as connection:
            exists = connection.execute(
                select(attested_nodes.c.spiffe_id).where(attested_nodes.c.spiffe_id == spiffe_id)
            ).first()
            if exists is None:
                raise NotFound(f"agent {spiffe_id} not found; list agents with 'warden agent list'")
            _replace_selectors(connection, spiffe_id, parsed)

    def record_agents_seen(self, sightings: Iterable[tuple[str, datetime]]) -> int:
        """Record when agents were last seen, batched; times never move backwards."""
        latest: dict[str, datetime] = {}
        for spiffe_id, seen_at in sightings:
            moment = require_aware(seen_at, "last seen time")
            if spiffe_id not in latest or moment > latest[spiffe_id]:
                latest[spiffe_id] = moment
        if not latest:
            return 0
        column = attested_nodes.c.last_seen_at
        seen = bindparam("seen_at", type_=UtcDateTime())
        statement = (
            update(attested_nodes)
            .where(attested_nodes.c.spiffe_id == bindparam("agent_id"))
            .where(or_(column.is_(None), column < seen))
            .values(last_seen_at=seen)
        )
        with self._write() as connection:
            connection.execute(
                statement,
                [{"agent_id": key, "seen_at": value} for key, value in sorted(latest.items())],
            )
        return len(latest)

    def evict_node(self, spiffe_id: str, *, actor: str) -> AttestedNode:
        """Delete an agent so that it can attest again; return it as it was."""
        now = self._now()
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            found = _load_nodes(connection, [spiffe_id])
            if not found:
                raise NotFound(f"agent {spiffe_id} not found; list agents with 'warden agent list'")
            connection.execute(
                delete(attested_nodes).where(attested_nodes.c.spiffe_id == spiffe_id)
            )
            append_records(
                connection,
                head,
                [AuditEvent(action="agent.evict", actor=actor, subject=spiffe_id)],
                now,
                self._server_id,
            )
        log.info("agent evicted", extra={"agent_id": spiffe_id, "caller": actor})
        return found[0]

    def ban_node(self, spiffe_id: str, *, actor: str) -> AttestedNode:
        """Ban an agent: clear its serials so its SVID is no longer accepted for renewal,
        and reject its attestations until it is evicted."""
        now = self._now()
        with self._write() as connection:
            head = lock_chain_head(connection, self._postgres)
            result = connection.execute(
                update(attested_nodes)
                .where(attested_nodes.c.spiffe_id == spiffe_id)
                .values(
                    banned=True,
                    serial_number="",
                    new_serial_number="",
                    new_expires_at=None,
                    updated_at=now,
                )
            )
            if not result.rowcount:
                raise NotFound(f"agent {spiffe_id} not found; list agents with 'warden agent list'")
            append_records(
                connection,
                head,
                [AuditEvent(action="agent.ban", actor=actor, subject=spiffe_id)],
                now,
                self._server_id,
            )
            node = _load_nodes(connection, [spiffe_id])[0]
        log.info("agent banned", extra={"agent_id": spiffe_id, "caller": actor})
        return node
