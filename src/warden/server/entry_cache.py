"""The server's in-memory index of registration entries, and agent authorisation.

An agent is authorised for the entries parented to its own SPIFFE ID or to one of its node
aliases (entries parented to the server whose selectors are all among the agent's node
selectors), and, recursively, for the entries parented to any SPIFFE ID it is authorised
for, as SPIRE does for nested agents. Expired entries authorise nothing.

The index holds every entry (a million fits in well under 2 GB) so that computing one
agent's entries never touches the datastore. It is changed only through `upsert` and
`delete`, which report which entries moved so that the sync streams can find the agents
concerned.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class CachedEntry:
    """One registration entry as the server keeps it in memory.

    Strings that repeat across entries (parent IDs, selectors, owners) are interned, and
    selectors are a sorted tuple of `type:value` strings.
    """

    id: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[str, ...]
    x509_svid_ttl: int
    jwt_svid_ttl: int
    dns_names: tuple[str, ...]
    federates_with: tuple[str, ...]
    admin: bool
    downstream: bool
    hint: str
    expires_at: int
    owner: str
    description: str
    created_at: int
    updated_at: int
    revision: int

    def is_expired(self, now: int) -> bool:
        return self.expires_at != 0 and self.expires_at <= now


def make_entry(
    *,
    id: str,
    spiffe_id: str,
    parent_id: str,
    selectors: Iterable[str],
    x509_svid_ttl: int = 0,
    jwt_svid_ttl: int = 0,
    dns_names: Iterable[str] = (),
    federates_with: Iterable[str] = (),
    admin: bool = False,
    downstream: bool = False,
    hint: str = "",
    expires_at: int = 0,
    owner: str = "",
    description: str = "",
    created_at: int = 0,
    updated_at: int = 0,
    revision: int = 0,
) -> CachedEntry:
    """Build a `CachedEntry`, interning the strings that repeat across entries."""
    intern = sys.intern
    return CachedEntry(
        id=id,
        spiffe_id=spiffe_id,
        parent_id=intern(parent_id),
        selectors=tuple(sorted(intern(selector) for selector in selectors)),
        x509_svid_ttl=x509_svid_ttl,
        jwt_svid_ttl=jwt_svid_ttl,
        dns_names=tuple(dns_names),
        federates_with=tuple(intern(domain) for domain in federates_with),
        admin=admin,
        downstream=downstream,
        hint=intern(hint),
        expires_at=expires_at,
        owner=intern(owner),
        description=description,
        created_at=created_at,
        updated_at=updated_at,
        revision=revision,
    )


class EntryCache:
    """Every registration entry, indexed by id, by parent ID and (node aliases) by selector."""

    def __init__(self, server_id: str) -> None:
        # Node alias entries are those parented to the server's own SPIFFE ID.
        self.server_id = server_id
        self._by_id: dict[str, CachedEntry] = {}
        self._by_parent: dict[str, dict[str, CachedEntry]] = {}
        self._aliases_by_selector: dict[str, dict[str, CachedEntry]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[CachedEntry]:
        return iter(list(self._by_id.values()))

    def get(self, entry_id: str) -> CachedEntry | None:
        return self._by_id.get(entry_id)

    def load(self, entries: Iterable[CachedEntry]) -> None:
        """Add many entries at once (server start). Later duplicates replace earlier ones."""
        for entry in entries:
            self.upsert(entry)

    def upsert(self, entry: CachedEntry) -> CachedEntry | None:
        """Add or replace an entry; return the version it replaced, if any."""
        previous = self._by_id.get(entry.id)
        if previous is not None:
            self._unindex(previous)
        self._by_id[entry.id] = entry
        self._by_parent.setdefault(entry.parent_id, {})[entry.id] = entry
        if entry.parent_id == self.server_id:
            for selector in entry.selectors:
                self._aliases_by_selector.setdefault(selector, {})[entry.id] = entry
        return previous

    def delete(self, entry_id: str) -> CachedEntry | None:
        """Remove an entry; return it, or None when it was not there."""
        previous = self._by_id.pop(entry_id, None)
        if previous is not None:
            self._unindex(previous)
        return previous

    def _unindex(self, entry: CachedEntry) -> None:
        siblings = self._by_parent.get(entry.parent_id)
        if siblings is not None:
            siblings.pop(entry.id, None)
            if not siblings:
                del self._by_parent[entry.parent_id]
        if entry.parent_id == self.server_id:
            for selector in entry.selectors:
                aliases = self._aliases_by_selector.get(selector)
                if aliases is not None:
                    aliases.pop(entry.id, None)
                    if not aliases:
                        del self._aliases_by_selector[selector]

    def node_aliases(self, node_selectors: frozenset[str], now: int) -> list[CachedEntry]:
        """The node alias entries whose selectors are all among `node_selectors`."""
        candidates: dict[str, CachedEntry] = {}
        for selector in node_selectors:
            aliases = self._aliases_by_selector.get(selector)
            if aliases:
                candidates.update(aliases)
        return [
            alias
            for alias in candidates.values()
            if not alias.is_expired(now) and all(s in node_selectors for s in alias.selectors)
        ]

    def authorized_entries(
        self, agent_id: str, node_selectors: frozenset[str], now: int
    ) -> dict[str, CachedEntry]:
        """The entries the agent `agent_id` may hold, by entry id."""
        roots = [agent_id]
        roots.extend(alias.spiffe_id for alias in self.node_aliases(node_selectors, now))
        result: dict[str, CachedEntry] = {}
        seen_ids = set(roots)
        pending = list(roots)
        while pending:
            parent = pending.pop()
            children = self._by_parent.get(parent)
            if not children:
                continue
            for entry in children.values():
                if entry.is_expired(now) or entry.id in result:
                    continue
                result[entry.id] = entry
                if entry.spiffe_id not in seen_ids:
                    seen_ids.add(entry.spiffe_id)
                    pending.append(entry.spiffe_id)
        return result

    def affects(
        self,
        changed: Iterable[CachedEntry],
        agent_id: str,
        node_selectors: frozenset[str],
        authorized_ids: set[str],
    ) -> bool:
        """Tell whether changes to `changed` entries (old or new versions) may change what
        the agent holds, given the SPIFFE IDs it was last authorised for."""
        for entry in changed:
            if entry.parent_id == agent_id or entry.parent_id in authorized_ids:
                return True
            if entry.parent_id == self.server_id and all(
                s in node_selectors for s in entry.selectors
            ):
                return True
        return False
