"""Registration entries as the agent keeps them, and the index that matches workloads.

An entry applies to a workload when every one of the entry's selectors is among the
workload's selectors. When several entries apply, they are ordered oldest first (creation
time, then id), so the oldest entry's SVID is the workload's default identity (`svids[0]`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from warden.spiffe import Selector, SpiffeId, TrustDomain

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """A registration entry the agent is authorised to serve."""

    id: str
    spiffe_id: SpiffeId
    selectors: frozenset[Selector]
    #: Unix seconds; orders the entries of a workload.
    created_at: int = 0
    #: Bumped by the server on every change of the entry.
    revision: int = 0
    #: Requested lifetimes in seconds; 0 leaves the choice to the server.
    x509_svid_ttl: int = 0
    jwt_svid_ttl: int = 0
    dns_names: tuple[str, ...] = ()
    federates_with: frozenset[TrustDomain] = frozenset()
    #: Operator-chosen label sent with the SVIDs (`internal`, `external`, ...).
    hint: str = ""

    @property
    def order_key(self) -> tuple[int, str]:
        return (self.created_at, self.id)

    def needs_new_svid(self, previous: Entry) -> bool:
        """Tell whether an SVID signed for `previous` no longer fits this version."""
        return (
            self.spiffe_id != previous.spiffe_id
            or self.x509_svid_ttl != previous.x509_svid_ttl
            or self.dns_names != previous.dns_names
        )


@dataclass(frozen=True, slots=True)
class EntryChanges:
    """The effect of one update: ids added, changed (any field) and removed."""

    added: frozenset[str] = frozenset()
    changed: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    #: Changed entries whose cached SVID must be replaced (new SPIFFE ID, TTL or DNS names).
    resign: frozenset[str] = frozenset()

    @property
    def touched(self) -> frozenset[str]:
        return self.added | self.changed | self.removed

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass
class EntrySet:
    """The entries the agent holds, indexed by selector for matching."""

    _entries: dict[str, Entry] = field(default_factory=dict)
    _by_selector: dict[Selector, set[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def all(self) -> Iterable[Entry]:
        return self._entries.values()

    def replace_all(self, entries: Iterable[Entry]) -> EntryChanges:
        """Make `entries` the complete set, as after a full sync from the server."""
        incoming = {entry.id: entry for entry in entries}
        removed = frozenset(self._entries.keys() - incoming.keys())
        for entry_id in removed:
            self._remove(entry_id)
        changes = self._upsert(incoming.values())
        return EntryChanges(changes.added, changes.changed, removed, changes.resign)

    def apply(self, upserts: Iterable[Entry], deleted_ids: Iterable[str]) -> EntryChanges:
        """Add or replace `upserts` and remove `deleted_ids`."""
        removed = set()
        for entry_id in deleted_ids:
            if entry_id in self._entries:
                self._remove(entry_id)
                removed.add(entry_id)
        changes = self._upsert(upserts)
        return EntryChanges(changes.added, changes.changed, frozenset(removed), changes.resign)

    def _upsert(self, entries: Iterable[Entry]) -> EntryChanges:
        added: set[str] = set()
        changed: set[str] = set()
        resign: set[str] = set()
        for entry in entries:
            if not entry.selectors:
                # An entry without selectors would match every process on the node. The
                # server never sends one, so treat it as corrupt rather than as a wildcard.
                log.warning(
                    "ignored an entry without selectors",
                    extra={"entry_id": entry.id, "spiffe_id": str(entry.spiffe_id)},
                )
                continue
            previous = self._entries.get(entry.id)
            if previous == entry:
                continue
            if previous is None:
                added.add(entry.id)
            else:
                changed.add(entry.id)
                if entry.needs_new_svid(previous):
                    resign.add(entry.id)
                self._unindex(previous)
            self._entries[entry.id] = entry
            for selector in entry.selectors:
                self._by_selector.setdefault(selector, set()).add(entry.id)
        return EntryChanges(frozenset(added), frozenset(changed), frozenset(), frozenset(resign))

    def _remove(self, entry_id: str) -> None:
        entry = self._entries.pop(entry_id)
        self._unindex(entry)

    def _unindex(self, entry: Entry) -> None:
        for selector in entry.selectors:
            ids = self._by_selector.get(selector)
            if ids is not None:
                ids.discard(entry.id)
                if not ids:
                    del self._by_selector[selector]

    def match(self, selectors: frozenset[Selector]) -> list[Entry]:
        """Return the entries whose selectors are all in `selectors`, oldest first."""
        candidates: set[str] = set()
        for selector in selectors:
            ids = self._by_selector.get(selector)
            if ids:
                candidates.update(ids)
        matched = [
            entry
            for entry in (self._entries[entry_id] for entry_id in candidates)
            if entry.selectors <= selectors
        ]
        matched.sort(key=lambda entry: entry.order_key)
        return matched
