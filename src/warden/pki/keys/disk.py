"""The `disk` key manager: one PKCS#8 PEM file per key, mode 0600, in a 0700 directory.

Files are written atomically: the key goes to a temporary file in the same directory, which
is flushed to disk, then renamed over the final name, and the directory is synced. A crash
leaves either the old file or the new one, never a partial key. Keys are cached in memory
after the first read, so signing never touches the disk.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from warden.pki.errors import KeyManagerError, KeyNotFoundError
from warden.pki.keys.base import KeyType, PrivateKey, check_key_id, fingerprint

log = logging.getLogger(__name__)

_SUFFIX = ".pem"
_TEMP_PREFIX = ".tmp-"


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write `key` to `path` as unencrypted PKCS#8 PEM, mode 0600, atomically."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}")
    # O_EXCL with mode 0600 creates the file private from its first byte: no window in
    # which another user could open it.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


class DiskKeyManager:
    """Keys as PEM files in `directory`, which is created with mode 0700 when missing."""

    name = "disk"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, PrivateKey] = {}
        self._lock = threading.Lock()
        self._prepare_directory()

    def _prepare_directory(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise KeyManagerError(
                f"key directory {self.directory} exists but is not a directory; point the "
                "disk key manager at a directory"
            )
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(self.directory.stat().st_mode)
            if mode & 0o077:
                log.warning(
                    "key directory was readable by other users; restricting it to mode 0700",
                    extra={"path": str(self.directory), "mode": oct(mode)},
                )
                self.directory.chmod(0o700)
        except OSError as error:
            raise KeyManagerError(
                f"cannot prepare key directory {self.directory}: {error.strerror}; check that "
                "the server's user may create and own it"
            ) from None
        # A crash between creating and renaming a temporary file leaves it behind.
        for leftover in self.directory.glob(f"{_TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{check_key_id(key_id)}{_SUFFIX}"

    def generate_key(self, key_id: str, key_type: KeyType) -> PrivateKey:
        path = self._path(key_id)
        key = key_type.generate()
        with self._lock:
            try:
                write_private_key(path, key)
            except OSError as error:
                raise KeyManagerError(
                    f"cannot write key {key_id!r} to {path}: {error.strerror}"
                ) from None
            self._cache[key_id] = key
        log.info(
            "key generated",
            extra={"key_id": key_id, "key_type": key_type.value, "fingerprint": fingerprint(key)},
        )
        return key

    def get_key(self, key_id: str) -> PrivateKey:
        path = self._path(key_id)
        with self._lock:
            cached = self._cache.get(key_id)
            if cached is not None:
                return cached
            key = self._load(key_id, path)
            self._cache[key_id] = key
            return key

    def _load(self, key_id: str, path: Path) -> PrivateKey:
        try:
            data = path.read_bytes()
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise KeyNotFoundError(f"key {key_id!r} not found: {path} does not exist") from None
        except OSError as error:
            raise KeyManagerError(
                f"cannot read key {key_id!r} from {path}: {error.strerror}"
            ) from None
        if mode & 0o077:
            log.warning(
                "key file is readable by other users; restricting it to mode 0600",
                extra={"key_id": key_id, "path": str(path), "mode": oct(mode)},
            )
            path.chmod(0o600)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise KeyManagerError(
                f"key file {path} is not an unencrypted PKCS#8 PEM private key: {error}"
            ) from None
        if not isinstance(key, PrivateKey):
            raise KeyManagerError(
                f"key file {path} contains a {type(key).__name__}; only EC and RSA keys are used"
            )
        return key

    def list_keys(self) -> list[str]:
        return sorted(
            path.name[: -len(_SUFFIX)]
            for path in self.directory.glob(f"*{_SUFFIX}")
            if not path.name.startswith(_TEMP_PREFIX)
        )

    def delete_key(self, key_id: str) -> bool:
        path = self._path(key_id)
        with self._lock:
            self._cache.pop(key_id, None)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as error:
                raise KeyManagerError(f"cannot delete key file {path}: {error.strerror}") from None
            _fsync_directory(self.directory)
        log.info("key deleted", extra={"key_id": key_id})
        return True
