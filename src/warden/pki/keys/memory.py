"""The `memory` key manager: keys live in the process and vanish when it stops.

For tests and `warden dev`. A server that uses it generates a new CA at every start.
"""

from __future__ import annotations

import threading

from warden.pki.errors import KeyNotFoundError
from warden.pki.keys.base import KeyType, PrivateKey, check_key_id


class MemoryKeyManager:
    """Keys in a dictionary, guarded by a lock."""

    name = "memory"

    def __init__(self) -> None:
        self._keys: dict[str, PrivateKey] = {}
        self._lock = threading.Lock()

    def generate_key(self, key_id: str, key_type: KeyType) -> PrivateKey:
        check_key_id(key_id)
        key = key_type.generate()
        with self._lock:
            self._keys[key_id] = key
        return key

    def get_key(self, key_id: str) -> PrivateKey:
        with self._lock:
            key = self._keys.get(key_id)
        if key is None:
            raise KeyNotFoundError(f"key {key_id!r} not found in the memory key manager")
        return key

    def list_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def delete_key(self, key_id: str) -> bool:
        with self._lock:
            return self._keys.pop(key_id, None) is not None
