"""A per-user cache of compiled Hyperscan databases.

Compiling the scanner's anchors takes about a second, which a pre-commit hook would pay on
every commit; loading a serialized database takes a millisecond. Databases are stored under
`$WARDEN_CACHE_DIR`, else `$XDG_CACHE_HOME/warden`, else `~/.cache/warden`, in `scan/`,
named by the SHA-256 of what was compiled (expressions, flags, Hyperscan version), so a rule
change or a Hyperscan upgrade never loads a stale database.

The cache is an optimisation: any problem (no home folder, a read-only disk, a file that
another user could have written) falls back to compiling, with a debug log line.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import stat
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_SUFFIX = ".hsdb"
# Databases kept: one per profile for a few versions of the rules used side by side.
_KEEP = 8


def cache_directory() -> Path | None:
    """Return the folder of cached databases, or None when no home folder is known."""
    explicit = os.environ.get("WARDEN_CACHE_DIR")
    if explicit:
        return Path(explicit) / "scan"
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache:
        return Path(cache) / "warden" / "scan"
    try:
        return Path.home() / ".cache" / "warden" / "scan"
    except RuntimeError:
        return None


def package_version(name: str) -> str:
    """Return an installed distribution's version, or an empty string."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def cache_key(*parts: bytes) -> str:
    """Return the name of a database from everything that went into compiling it."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def load(key: str) -> bytes | None:
    """Return the cached database named `key`, or None.

    A file that is not a regular file owned by the current user, or that others may write,
    is ignored: a database is code that Hyperscan runs on every byte scanned.
    """
    folder = cache_directory()
    if folder is None:
        return None
    path = folder / (key + _SUFFIX)
    try:
        status = path.lstat()
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid():
            logger.debug("ignoring cached scan database %s: not a file of this user", path)
            return None
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            logger.debug("ignoring cached scan database %s: writable by others", path)
            return None
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.debug("cannot read cached scan database %s: %s", path, error)
        return None


def store(key: str, data: bytes) -> None:
    """Write the database named `key` atomically (mode 0600); failures are logged only."""
    folder = cache_directory()
    if folder is None:
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".scan-", suffix=_SUFFIX, dir=folder)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, folder / (key + _SUFFIX))
        except BaseException:
            os.unlink(temporary)
            raise
        _prune(folder)
    except OSError as error:
        logger.debug("cannot cache the scan database in %s: %s", folder, error)


def _prune(folder: Path) -> None:
    """Delete all but the `_KEEP` most recently written databases: each rule change or
    Hyperscan upgrade leaves older ones behind."""
    stored = sorted(folder.glob("*" + _SUFFIX), key=lambda path: path.stat().st_mtime)
    for path in stored[:-_KEEP]:
        path.unlink(missing_ok=True)
