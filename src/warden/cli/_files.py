"""Writing files the CLI produces: public ones 0644, private keys and tokens 0600, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write a private key, a token or a security report with mode 0600, so only its owner
    can read it."""
    _write_atomically(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    _write_atomically(path, data, 0o644)
