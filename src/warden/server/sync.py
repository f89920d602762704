"""Which agents must hear of which entry changes, and what each agent is authorised for.

Each open `SyncEntries` stream registers a session here. When entries change, the hub marks
the sessions whose authorised set may have moved (see `EntryCache.affects`); each stream then
recomputes its agent's entries and sends only the difference. A bundle change marks every
session. Evicting or banning an agent closes its sessions with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from warden.server.entry_cache import CachedEntry, EntryCache


@dataclass(eq=False)
class AgentSession:
    """One open sync stream of one agent."""

    agent_id: str
    node_selectors: frozenset[str]
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Entry id -> revision, as last sent to the agent.
    sent: dict[str, int] = field(default_factory=dict)
    # SPIFFE IDs the agent was last authorised for, to decide which changes concern it.
    authorized_ids: set[str] = field(default_factory=set)
    bundle_sequence: int = -1
    closed_reason: str | None = None

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self.changed.set()


class SyncHub:
    """The open sync sessions, and a per-agent memo of authorised entries."""

    def __init__(self, cache: EntryCache, now: Callable[[], int]) -> None:
        self._cache = cache
        self._now = now
        self._sessions: dict[str, set[AgentSession]] = {}
        # Bumped on every entry change; memoised authorisations older than it are stale.
        self._generation = 0
        self._memo: dict[str, tuple[int, frozenset[str], int, dict[str, CachedEntry]]] = {}

    @property
    def session_count(self) -> int:
        return sum(len(sessions) for sessions in self._sessions.values())

    def register(self, agent_id: str, node_selectors: frozenset[str]) -> AgentSession:
        session = AgentSession(agent_id, node_selectors)
        self._sessions.setdefault(agent_id, set()).add(session)
        return session

    def unregister(self, session: AgentSession) -> None:
        sessions = self._sessions.get(session.agent_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[session.agent_id]

    def authorized(self, agent_id: str, node_selectors: frozenset[str]) -> dict[str, CachedEntry]:
        """The entries `agent_id` may hold now, memoised until the next entry change.

        The memo also expires each second, because entries stop authorising when they expire.
        """
        now = self._now()
        memo = self._memo.get(agent_id)
        if (
            memo is not None
            and memo[0] == self._generation
            and memo[1] == node_selectors
            and memo[2] == now
        ):
            return memo[3]
        result = self._cache.authorized_entries(agent_id, node_selectors, now)
        if len(self._memo) > 100_000:
            self._memo.clear()
        self._memo[agent_id] = (self._generation, node_selectors, now, result)
        return result

    def entries_changed(self, changed: Iterable[CachedEntry]) -> int:
        """Mark the sessions concerned by changes to `changed` (old and new versions).

        Returns how many sessions were marked.
        """
        changed = list(changed)
        if not changed:
            return 0
        self._generation += 1
        marked = 0
        for sessions in self._sessions.values():
            for session in sessions:
                if session.changed.is_set():
                    continue
                if self._cache.affects(
                    changed, session.agent_id, session.node_selectors, session.authorized_ids
                ):
                    session.changed.set()
                    marked += 1
        return marked

    def bundle_changed(self) -> None:
        for sessions in self._sessions.values():
            for session in sessions:
                session.changed.set()

    def agent_removed(self, agent_id: str, reason: str) -> None:
        """Close every session of `agent_id` (evicted or banned) with `reason`."""
        self._memo.pop(agent_id, None)
        for session in list(self._sessions.get(agent_id, ())):
            session.close(reason)

    def agent_selectors_changed(self, agent_id: str, node_selectors: frozenset[str]) -> None:
        self._memo.pop(agent_id, None)
        for session in self._sessions.get(agent_id, ()):
            session.node_selectors = node_selectors
            session.changed.set()
