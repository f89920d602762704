"""Structured logging on the standard library, as text or JSON lines.

Callers pass fields through `extra`, with the stable names of `FIELD_NAMES`, so that every
log line of every process can be searched the same way:

    log.info("entry created", extra={"entry_id": entry.id, "spiffe_id": str(entry.spiffe_id)})

Never pass a private key, token or password; pass a key id or fingerprint instead.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: Field names used across Warden's logs.
FIELD_NAMES = (
    "spiffe_id",
    "entry_id",
    "agent_id",
    "selectors",
    "audience",
    "lease_id",
    "identity",
    "trust_domain",
    "key_id",
    "serial",
    "address",
    "caller",
    "path",
    "error",
    "attempt",
    "delay_seconds",
)

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        document.update(_fields(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def _needs_quotes(text: str) -> bool:
    return (
        text == ""
        or any(character in ' "=' for character in text)
        or any(ord(character) < 0x20 or 0x7F <= ord(character) < 0xA0 for character in text)
    )


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            record.levelname.upper(),
            f"{record.name}:",
            record.getMessage(),
        ]
        for key, value in _fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if isinstance(value, str) and _needs_quotes(text):
                # JSON quoting escapes line breaks and other controls, so a value cannot
                # forge another log line or field.
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send the `warden` loggers to `stream` (standard error by default) in the given format.

    `level` is one of debug, info, warn, error; `log_format` is text or json.
    """
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"invalid log level {level!r}: use one of debug, info, warn, error")
    if log_format not in ("text", "json"):
        raise ValueError(f"invalid log format {log_format!r}: use 'text' or 'json'")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("warden")
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric)
    root.propagate = False
