"""Keyed checkpoints of the audit log's chain head, kept outside the database.

The hash chain shows any change to a record unless the one who changes it also recomputes every
later hash, and anyone able to drop the database's triggers can do that. So the server writes
the chain head (sequence number and hash) to `data_dir/audit-checkpoints.jsonl` every
minute, each line authenticated with HMAC-SHA256 under a key kept beside it (mode 0600).
Verification then also checks that the record at each checkpoint still has the hash the
server saw: rewriting history now needs the server's data_dir as well as the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEY_FILE = "audit-checkpoint.key"
CHECKPOINT_FILE = "audit-checkpoints.jsonl"


@dataclass(frozen=True)
class CheckpointResult:
    ok: bool
    checkpoints: int
    problem: str = ""


def _key(data_dir: Path, create: bool) -> bytes | None:
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    key = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def _mac(key: bytes, seq: int, record_hash: str, time: str, server_id: str) -> str:
    message = f"{seq}:{record_hash}:{time}:{server_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class CheckpointWriter:
    """Appends a checkpoint whenever the chain head has moved since the last one."""

    def __init__(self, data_dir: Path, server_id: str, head: Callable[[], tuple[int, str]]) -> None:
        self._data_dir = data_dir
        self._server_id = server_id
        self._head = head
        self._key = _key(data_dir, create=True)
        self._last_seq = -1

    def write(self, now: datetime) -> None:
        """Record the current head (blocking: call it from a worker thread)."""
        seq, record_hash = self._head()
        if seq == self._last_seq or seq == 0:
            return
        assert self._key is not None
        time = now.isoformat()
        line = {
            "seq": seq,
            "hash": record_hash,
            "time": time,
            "server_id": self._server_id,
            "mac": _mac(self._key, seq, record_hash, time, self._server_id),
        }
        path = self._data_dir / CHECKPOINT_FILE
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._last_seq = seq


def verify_checkpoints(data_dir: Path, datastore: Any) -> CheckpointResult:
    """Check every checkpoint's MAC and that the database still has its record and hash."""
    path = data_dir / CHECKPOINT_FILE
    key = _key(data_dir, create=False)
    if key is None or not path.exists():
        return CheckpointResult(True, 0)
    head_seq, _ = datastore.audit_head()
    count = 0
    with path.open() as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                seq, record_hash = int(line["seq"]), str(line["hash"])
                expected = _mac(key, seq, record_hash, str(line["time"]), str(line["server_id"]))
                authentic = hmac.compare_digest(expected, str(line["mac"]))
            except (ValueError, KeyError, TypeError):
                authentic = False
            if not authentic:
                return CheckpointResult(
                    False,
                    count,
                    f"{path}:{number}: the checkpoint was altered (its MAC does not match)",
                )
            if seq > head_seq:
                return CheckpointResult(
                    False,
                    count,
                    f"the audit log ends at record {head_seq}, but record {seq} was checkpointed "
                    "by this server: records were removed",
                )
            stored = next(iter(datastore.iter_audit(after_seq=seq - 1, limit=1)), None)
            if stored is None or stored.seq != seq or stored.record_hash != record_hash:
                return CheckpointResult(
                    False,
                    count,
                    f"audit record {seq} no longer has the hash this server checkpointed at "
                    f"{line['time']}: the log was rewritten",
                )
            count += 1
    return CheckpointResult(True, count)
