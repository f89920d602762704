"""Key managers: where the CA's private keys live.

Each key manager is one module with one class, registered by name in `KEY_MANAGERS`, so that
adding one (PKCS#11, a cloud KMS) is one new file and one line in that table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from warden.pki.errors import KeyManagerError, KeyNotFoundError
from warden.pki.keys.base import KeyManager, KeyType, PrivateKey, check_key_id, fingerprint
from warden.pki.keys.disk import DiskKeyManager, write_private_key
from warden.pki.keys.memory import MemoryKeyManager


def _open_memory(options: Mapping[str, Any]) -> KeyManager:
    if options:
        raise KeyManagerError(f'KeyManager "memory" takes no options; remove {sorted(options)}')
    return MemoryKeyManager()


def _open_disk(options: Mapping[str, Any]) -> KeyManager:
    # SPIRE's server plugin calls its setting keys_path and its agent plugin directory; both
    # name the directory of key files here.
    unknown = set(options) - {"directory", "keys_path"}
    if unknown:
        raise KeyManagerError(
            f'KeyManager "disk" does not know {sorted(unknown)}; set directory (or keys_path)'
        )
    location = options.get("directory") or options.get("keys_path")
    if not location:
        raise KeyManagerError(
            'KeyManager "disk" needs directory (or keys_path): the directory of key files'
        )
    return DiskKeyManager(Path(os.fspath(location)))


#: Key managers by the name used in configuration files.
KEY_MANAGERS: dict[str, Callable[[Mapping[str, Any]], KeyManager]] = {
    "memory": _open_memory,
    "disk": _open_disk,
}


def open_key_manager(name: str, options: Mapping[str, Any] | None = None) -> KeyManager:
    """Create the key manager registered as `name` with its configuration `options`."""
    factory = KEY_MANAGERS.get(name)
    if factory is None:
        raise KeyManagerError(
            f"unknown KeyManager {name!r}: Warden supports {', '.join(sorted(KEY_MANAGERS))}"
        )
    return factory(options or {})


__all__ = [
    "KEY_MANAGERS",
    "DiskKeyManager",
    "KeyManager",
    "KeyManagerError",
    "KeyNotFoundError",
    "KeyType",
    "MemoryKeyManager",
    "PrivateKey",
    "check_key_id",
    "fingerprint",
    "open_key_manager",
    "write_private_key",
]
