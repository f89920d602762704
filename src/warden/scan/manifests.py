"""Kubernetes `Secret` manifests: decode each `data` value and scan it with its key.

A Secret's `data` values are base64, so no rule finds `password: aHVudGVyMg==` for what it is.
This module parses YAML and JSON manifests, including multi-document files and `kind: List`.
It decodes each `data` value and reads each `stringData` value as written. The rules then run
on every value with its key as context (`password`, `.dockerconfigjson`, `tls.key`): the
pattern rules on the value's text and the keyed rules on the pair. Findings point at the line
of the key in the manifest.

Text matches inside a decoded `data` value are dropped: they saw the base64 text, not the
secret (a generic password rule would otherwise report the base64 of `changeme`).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from warden.scan.detector import Detector, FileContent, Match, allowed
from warden.scan.model import ScanWarning

logger = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml", ".json")
# Manifests above this size are scanned as text only: parsing a large generated YAML file
# costs more than the few Secrets it could hold are worth.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SecretEntry:
    """One key of a Secret's `data` or `stringData`, with its place in the file.

    `line` (0-based) is the key's line and `column` (0-based) the value's column. `start`
    and `end` are the character offsets of the value as written (base64 for `data`).
    """

    secret_name: str
    field: str
    key: str
    value: str
    line: int
    column: int
    start: int
    end: int


# `kind: Secret` in YAML or `"kind": "Secret"` in JSON, minified or not.
_KIND_SECRET = re.compile(rb"""\bkind["']?[ \t]*:[ \t]*["']?Secret["']?[ \t]*(?:[,}\r\n#]|$)""")


def might_hold_secrets(data: bytes, path: str) -> bool:
    """Tell, without parsing, whether `data` could be a manifest with a Secret."""
    return (
        path.lower().endswith(_SUFFIXES)
        and len(data) <= MAX_MANIFEST_BYTES
        and b"Secret" in data
        and _KIND_SECRET.search(data) is not None
    )


def _load(text: str) -> Iterator[Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # compose_all builds nodes with their positions and constructs no objects.
    return yaml.compose_all(text, Loader=loader)


def _scalar(node: Any) -> str | None:
    from yaml.nodes import ScalarNode

    return node.value if isinstance(node, ScalarNode) else None


def _mapping(node: Any) -> dict[str, tuple[Any, Any]]:
    """Return a mapping node's entries by key, each with its key and value nodes."""
    from yaml.nodes import MappingNode

    if not isinstance(node, MappingNode):
        return {}
    entries: dict[str, tuple[Any, Any]] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node)
        if key is not None:
            entries[key] = (key_node, value_node)
    return entries


def _secrets(document: Any, seen: set[int]) -> Iterator[dict[str, tuple[Any, Any]]]:
    """Yield the Secret objects of one document: itself, or the items of a List.

    YAML aliases let a List hold itself, or hold another List ten times at each of many
    levels, so each node is visited once: `seen` contains the ids of the nodes visited.
    """
    from yaml.nodes import SequenceNode

    if id(document) in seen:
        return
    seen.add(id(document))
    entries = _mapping(document)
    kind = _scalar(entries["kind"][1]) if "kind" in entries else None
    if kind == "Secret":
        yield entries
    elif kind is not None and kind.endswith("List") and "items" in entries:
        items = entries["items"][1]
        if isinstance(items, SequenceNode):
            for item in items.value:
                yield from _secrets(item, seen)


def _name(secret: dict[str, tuple[Any, Any]]) -> str:
    metadata = _mapping(secret["metadata"][1]) if "metadata" in secret else {}
    name = _scalar(metadata["name"][1]) if "name" in metadata else None
    namespace = _scalar(metadata["namespace"][1]) if "namespace" in metadata else None
    return "/".join(part for part in (namespace, name) if part) or "?"


def decode_data_value(encoded: str) -> str | None:
    """Decode a `data` value: base64 (whitespace allowed, as YAML folds long lines) to UTF-8
    text; None for invalid base64 or binary content such as a keystore."""
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if "\x00" not in text else None


def secret_entries(text: str, path: str, warnings: list[ScanWarning]) -> list[SecretEntry]:
    """Return the `data` (decoded) and `stringData` entries of every Secret in `text`.

    A file that does not parse as YAML gets a `parse_error` warning and no entries; its text
    is still scanned line by line.
    """
    import yaml

    entries: list[SecretEntry] = []
    try:
        for document in _load(text):
            for secret in _secrets(document, set()):
                entries.extend(_entries(secret))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        warnings.append(
            ScanWarning(
                "parse_error",
                path,
                f"not valid YAML{where} (a template?); the base64 values of its Secret were "
                "not decoded, the file was scanned as text",
            )
        )
    return entries


def _entries(secret: dict[str, tuple[Any, Any]]) -> Iterator[SecretEntry]:
    name = _name(secret)
    for field in ("data", "stringData"):
        if field not in secret:
            continue
        for key, (key_node, value_node) in _mapping(secret[field][1]).items():
            written = _scalar(value_node)
            if written is None:
                continue
            value = decode_data_value(written) if field == "data" else written
            if value is None:
                continue
            yield SecretEntry(
                secret_name=name,
                field=field,
                key=key,
                value=value,
                line=key_node.start_mark.line,
                column=value_node.start_mark.column,
                start=value_node.start_mark.index,
                end=value_node.end_mark.index,
            )


def secret_matches(
    detector: Detector, content: FileContent, path: str, warnings: list[ScanWarning]
) -> tuple[list[Match], list[tuple[int, int]]]:
    """Run the rules on every Secret value of a manifest.

    Returns the matches, placed on the line of their key, and the spans of the decoded
    `data` values, inside which text matches must be dropped.
    """
    matches: list[Match] = []
    decoded_spans: list[tuple[int, int]] = []
    for entry in secret_entries(content.text, path, warnings):
        if entry.field == "data":
            decoded_spans.append((entry.start, entry.end))
        for match in detector.detect_value(entry.value, entry.key, path):
            details = {
                **match.check.details,
                "kubernetes_secret": entry.secret_name,
                "kubernetes_secret_key": f"{entry.field}.{entry.key}",
            }
            if entry.field == "data":
                details["encoding"] = "base64, decoded"
            placed = replace(
                match,
                line=entry.line + 1,
                column=entry.column + 1,
                start=entry.start,
                end=max(entry.end, entry.start + 1),
                check=replace(match.check, details=details),
            )
            placed.inline_allowed = allowed(content, entry.line, end=entry.end)
            matches.append(placed)
    return matches, decoded_spans


def merge(
    text_matches: list[Match], secret: list[Match], decoded_spans: list[tuple[int, int]]
) -> list[Match]:
    """Combine text and Secret matches: drop text matches inside decoded values and text
    matches that found the same secret on the same line (a `stringData` value)."""
    if not secret and not decoded_spans:
        return text_matches
    seen = {(match.line, match.secret) for match in secret}
    # YAML values do not overlap, so the spans sorted by start are sorted by end too, and
    # only the last span starting at or before a match can contain it.
    spans = sorted(decoded_spans)
    starts = [start for start, _ in spans]

    def in_decoded_value(offset: int) -> bool:
        position = bisect.bisect_right(starts, offset) - 1
        return position >= 0 and offset < spans[position][1]

    kept = [
        match
        for match in text_matches
        if (match.line, match.secret) not in seen and not in_decoded_value(match.start)
    ]
    return sorted([*kept, *secret], key=lambda match: (match.start, match.rule.id))
