"""Where the CA keeps its journal and publishes its authorities.

The datastore implements these two Protocols; the in-memory versions here serve tests and
`warden dev`. Several servers may share one datastore: each keeps its own journal under its
server id, and all of them add their authorities to the one bundle of the trust domain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class JournalStore(Protocol):
    """Keeps each server's CA journal: opaque bytes, written whole."""

    def load_journal(self, server_id: str) -> bytes | None:
        """Return the journal saved for `server_id`, or None when there is none."""
        ...

    def save_journal(self, server_id: str, data: bytes) -> None:
        """Replace the journal of `server_id` with `data`, durably, before returning."""
        ...


class BundleStore(Protocol):
    """Keeps the bundle record of each trust domain, changed only through `update_bundle`."""

    def update_bundle(self, trust_domain: str, mutate: Callable[[bytes | None], bytes]) -> bytes:
        """Replace the record of `trust_domain` with `mutate(current)` atomically; return it.

        `mutate` receives the stored bytes, or None when there are none, and returns the new
        bytes. The read, the call and the write form one transaction that holds a lock on
        the record (SELECT ... FOR UPDATE on PostgreSQL), so concurrent updates from several
        servers serialize and none is lost. `mutate` is pure and may be called again when the
        transaction is retried. An exception from `mutate` aborts the update.
        """
        ...

    def get_bundle(self, trust_domain: str) -> bytes | None:
        """Return the stored record of `trust_domain`, or None when there is none."""
        ...


class MemoryJournalStore:
    """Journals in a dictionary."""

    def __init__(self) -> None:
        self._journals: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_journal(self, server_id: str) -> bytes | None:
        with self._lock:
            return self._journals.get(server_id)

    def save_journal(self, server_id: str, data: bytes) -> None:
        with self._lock:
            self._journals[server_id] = bytes(data)


class MemoryBundleStore:
    """Bundle records in a dictionary; one lock serializes the updates as a row lock would."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def update_bundle(self, trust_domain: str, mutate: Callable[[bytes | None], bytes]) -> bytes:
        with self._lock:
            updated = bytes(mutate(self._records.get(trust_domain)))
            self._records[trust_domain] = updated
            return updated

    def get_bundle(self, trust_domain: str) -> bytes | None:
        with self._lock:
            return self._records.get(trust_domain)
