"""The scanner's workspace and the keyed hashes that stand in for secrets.

A plain SHA-256 of a short password can be reversed by hashing candidates, so findings carry
an HMAC-SHA256 keyed with a random 32-byte key instead. The key lives in the workspace
folder (`--workspace DIR`, else `$WARDEN_WORKSPACE`, else `$XDG_STATE_HOME/warden`, else
`~/.local/state/warden`), created with mode 0700, in the file `scan-hmac.key` with mode 0600.
`WARDEN_SCAN_HMAC_KEY` (64 hexadecimal characters) overrides the file, so that CI and
developers can share one key and therefore one baseline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_FILE = "scan-hmac.key"
KEY_ENVIRONMENT = "WARDEN_SCAN_HMAC_KEY"


class WorkspaceError(Exception):
    """The workspace or its key cannot be used; the message says what to do."""


def default_workspace() -> Path:
    """Return the per-user state folder: $WARDEN_WORKSPACE, $XDG_STATE_HOME/warden or
    ~/.local/state/warden."""
    explicit = os.environ.get("WARDEN_WORKSPACE")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "warden"


def _write_key_atomically(path: Path, key_hex: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".scan-hmac-", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key_hex + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails when another process created the key first; then theirs is used.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def _parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise WorkspaceError(
            f"{source}: not hexadecimal; expected 64 hexadecimal characters"
        ) from None
    if len(key) < 32:
        raise WorkspaceError(
            f"{source}: {len(key)} bytes; expected at least 32 (64 hexadecimal characters)"
        )
    return key


@dataclass(frozen=True)
class Keyring:
    """The HMAC key of one workspace. `key_id` names the key without revealing it."""

    key: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"warden-scan-key-id\0" + self.key).hexdigest()[:16]

    def secret_hash(self, secret: str) -> str:
        """HMAC-SHA256 of the secret, 32 hexadecimal characters (128 bits)."""
        return hmac.new(
            self.key, b"secret\0" + secret.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).hexdigest()[:32]

    def fingerprint(self, secret_hash: str, path: str) -> str:
        """A finding's fingerprint: keyed hash of the secret's hash and the file path.

        It has no line, commit or rule in it, so it survives edits above the secret, rebases,
        squashes and rule renames; the same secret in another file is another finding.
        """
        message = f"fingerprint\0{secret_hash}\0{path}".encode("utf-8", "surrogateescape")
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]

    @classmethod
    def load(cls, workspace: Path | None = None) -> Keyring:
        """Load the key from the environment or the workspace, creating both when missing."""
        from_environment = os.environ.get(KEY_ENVIRONMENT)
        if from_environment:
            return cls(_parse_key(from_environment, KEY_ENVIRONMENT))
        folder = workspace or default_workspace()
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise WorkspaceError(
                f"cannot create the workspace {folder}: {error.strerror}; pass --workspace DIR"
            ) from error
        path = folder / KEY_FILE
        if not path.exists():
            _write_key_atomically(path, secrets.token_hex(32))
            logger.info("created scan HMAC key", extra={"path": str(path)})
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "scan HMAC key %s is readable by other users (mode %o); run chmod 600 on it",
                path,
                mode,
            )
        try:
            text = path.read_text()
        except OSError as error:
            raise WorkspaceError(f"cannot read {path}: {error.strerror}") from error
        return cls(_parse_key(text, str(path)))


def redact(secret: str, prefix: str) -> str:
    """Show the rule's fixed prefix, or a few leading characters, and hide the rest.

    Without a fixed prefix, at most one character in six is shown (at most four), so an
    8-character password shows one character and a 40-character key four.
    """
    shown = prefix if prefix and secret.startswith(prefix) else secret[: min(4, len(secret) // 6)]
    first_line = shown.split("\n", 1)[0]
    return f"{first_line}…"
