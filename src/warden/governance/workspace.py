"""The DuckDB analysis workspace: ingested files, normalised activity and inventory snapshots.

One workspace is one directory holding `warden.duckdb`. Activity from every log source goes
into the `activity` table, one row per event, in one normalised shape (time, identity,
credential, action, source address, user agent, region, outcome). The `events` view removes
duplicate deliveries of the same event (same source and event id), so that readers never
count an event twice.

Ingestion is incremental. `ingested_files` records each file read, with its size, mtime and
SHA-256. A later run skips a file whose path, size and mtime are unchanged without opening
it. It also skips a new path whose content hash was already ingested (a duplicated
delivery).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

DATABASE_NAME = "warden.duckdb"
SCHEMA_VERSION = 1

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS workspace_meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE SEQUENCE IF NOT EXISTS ingested_files_id""",
    """CREATE TABLE IF NOT EXISTS ingested_files (
        id BIGINT PRIMARY KEY DEFAULT nextval('ingested_files_id'),
        path VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        shape VARCHAR,
        events BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        duplicate_of VARCHAR,
        ingested_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS activity (
        source VARCHAR NOT NULL,
        event_id VARCHAR,
        event_time TIMESTAMPTZ,
        identity VARCHAR,
        principal VARCHAR,
        identity_type VARCHAR,
        credential VARCHAR,
        session_name VARCHAR,
        action VARCHAR,
        service VARCHAR,
        operation VARCHAR,
        resource VARCHAR,
        source_address VARCHAR,
        user_agent VARCHAR,
        region VARCHAR,
        account VARCHAR,
        outcome VARCHAR,
        read_only BOOLEAN,
        console BOOLEAN,
        mfa BOOLEAN,
        invoked_by VARCHAR,
        vpc_endpoint VARCHAR,
        stage VARCHAR,
        request_parameters JSON,
        response_elements JSON,
        file VARCHAR
    )""",
    # One row per event: duplicated delivery files and the several audit stages of one
    # Kubernetes request collapse to one row, preferring the completed stage.
    """CREATE OR REPLACE VIEW events AS
        SELECT * EXCLUDE (row_key) FROM (
            SELECT *, coalesce(event_id, 'row:' || CAST(rowid AS VARCHAR)) AS row_key
            FROM activity
        )
        QUALIFY row_number() OVER (
            PARTITION BY source, row_key
            ORDER BY (stage = 'ResponseComplete') DESC NULLS LAST, file
        ) = 1""",
    """CREATE TABLE IF NOT EXISTS identities (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR,
        provider VARCHAR,
        name VARCHAR,
        human BOOLEAN,
        classification VARCHAR,
        owner VARCHAR,
        owner_source VARCHAR,
        created_at TIMESTAMPTZ,
        last_used_at TIMESTAMPTZ,
        snapshot_at TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS credentials (
        id VARCHAR,
        identity VARCHAR,
        type VARCHAR,
        long_lived BOOLEAN,
        created_at TIMESTAMPTZ,
        last_used_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ,
        snapshot_at TIMESTAMPTZ
    )""",
]

# Files per DuckDB `read_json` call. Large batches let DuckDB read files in parallel; a
# batch that fails is retried file by file so that one bad file costs only itself.
BATCH_FILES = 256
BATCH_BYTES = 512 << 20
# DuckDB's buffer pool limit for a workspace. Its caches stop growing here, so the process
# stays near this size however many events the workspace holds; larger work spills to the
# workspace directory. On 1 million replicated CloudTrail events on 2 cores, 512 MB ingested
# as fast as 2 GB with a third less peak memory.
MEMORY_LIMIT = "512MB"
_MEMORY_SIZE = re.compile(r"[0-9]+(?:\.[0-9]+)?\s?(?:[KMGT]i?B)", re.IGNORECASE)
# DuckDB rejects a JSON value larger than this, and a `{"Records": [...]}` file is one
# value; its reader buffers about twice this per thread, which must fit the memory limit.
# A larger file fails the fast path and is read by the streaming reader, which keeps one
# event at a time in memory.
MAX_OBJECT_BYTES = 32 << 20
# Problems listed per damaged file; the rest are counted in one more warning, so that a
# large file of text lines does not fill the report with a warning per line.
MAX_WARNINGS_PER_FILE = 20


@dataclass(frozen=True)
class PendingFile:
    path: Path
    size: int
    mtime_ns: int
    sha256: str
    shape: str
    gzip: bool


@dataclass
class IngestStats:
    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    files_duplicate: int = 0
    events: int = 0
    warnings: list[tuple[str, int | None, str]] = field(default_factory=list)


class LogKind:
    """How one kind of log maps onto the activity table.

    Each event is read as raw JSON and its fields are pulled out in one pass with DuckDB's
    multi-path `json_extract_string`/`json_extract`. That is several times faster than
    binding a typed schema (see bench/audit.py), and a field of an unexpected type comes
    back as its JSON text instead of failing the file. `fields` are
    (alias, JSONPath) pairs read as text, `json_fields` pairs kept as JSON, and
    `select_sql` is the SELECT list that turns a row of those aliases (plus `no_identity`
    and `filename`) into the activity table's columns, in table order.
    """

    name: str = ""
    fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    json_fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    identity_path: str = "$.userIdentity"
    select_sql: str = ""


class WorkspaceError(Exception):
    """The workspace directory or its database cannot be used."""


class Workspace:
    """A DuckDB database file in a directory, created on first use.

    Raises WorkspaceError when the directory cannot be created, the database is not a DuckDB
    file, or another process has it open.
    """

    def __init__(self, directory: Path | None = None, memory_limit: str = MEMORY_LIMIT) -> None:
        if not _MEMORY_SIZE.fullmatch(memory_limit):
            raise WorkspaceError(
                f"memory limit {memory_limit!r} is not a size; give a number and a unit, "
                "such as 512MB or 4GB"
            )
        import duckdb

        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="warden-audit-")
            directory = Path(self._temporary.name)
        try:
            # The workspace contains log contents, so only its owner may read it.
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise WorkspaceError(
                f"cannot use {directory} as the workspace: {error.strerror or error}; "
                "give a directory that can be created and written"
            ) from None
        self.directory = directory
        self.path = directory / DATABASE_NAME
        try:
            self.connection: duckdb.DuckDBPyConnection = duckdb.connect(str(self.path))
        except duckdb.Error as error:
            if self._temporary is not None:
                self._temporary.cleanup()
            raise WorkspaceError(_open_error(self.path, error)) from None
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        # Times come back as aware datetimes in UTC whatever the machine's zone.
        self.connection.execute("SET TimeZone = 'UTC'")
        # Ingestion needs no ordering inside a batch; dropping it lets DuckDB stream
        # inserts with less memory. The memory limit keeps the buffer pool, and so the
        # process, bounded however many events a workspace holds.
        self.connection.execute("SET preserve_insertion_order = false")
        self.connection.execute(f"SET memory_limit = '{memory_limit}'")
        for statement in _SCHEMA:
            self.connection.execute(statement)
        self.connection.execute(
            "INSERT OR REPLACE INTO workspace_meta VALUES ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )

    def close(self) -> None:
        self.connection.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Planning: which files need reading.

    def plan(
        self, roots: Iterable[Path], source: str, stats: IngestStats, patterns: Sequence[str]
    ) -> list[PendingFile]:
        """List the files under `roots` that this workspace has not ingested yet.

        Unreadable files become warnings in `stats`; they are not recorded, so a later run
        tries them again.
        """
        from warden.governance.jsonstream import is_gzip, sniff_shape

        known = {
            row[0]: (row[1], row[2])
            for row in self.connection.execute(
                "SELECT path, size, mtime_ns FROM ingested_files WHERE source = ?", [source]
            ).fetchall()
        }
        hashes = {
            row[0]: row[1]
            for row in self.connection.execute(
                "SELECT sha256, path FROM ingested_files WHERE source = ? AND status = 'read'",
                [source],
            ).fetchall()
        }
        pending: list[PendingFile] = []
        for path in _expand(roots, patterns, stats):
            stats.files_seen += 1
            text_path = str(path)
            try:
                status = path.stat()
            except OSError as error:
                stats.warnings.append((text_path, None, f"cannot read file: {error}"))
                continue
            if not stat.S_ISREG(status.st_mode):
                # Reading a pipe or a device such as /dev/zero would never end.
                stats.warnings.append(
                    (text_path, None, "not a regular file (a pipe, device or socket); skipped")
                )
                continue
            if known.get(text_path) == (status.st_size, status.st_mtime_ns):
                stats.files_unchanged += 1
                continue
            try:
                digest = _sha256(path)
            except OSError as error:
                stats.warnings.append((text_path, None, f"cannot read file: {error}"))
                continue
            if digest in hashes and hashes[digest] != text_path:
                stats.files_duplicate += 1
                self._record(
                    path,
                    status.st_size,
                    status.st_mtime_ns,
                    digest,
                    source,
                    None,
                    0,
                    "duplicate",
                    hashes[digest],
                )
                continue
            try:
                gzip = is_gzip(path)
                if path.name.endswith(".gz") and not gzip:
                    stats.warnings.append(
                        (text_path, 1, "named .gz but not gzip-compressed; read as plain text")
                    )
                shape = sniff_shape(path)
            except (OSError, EOFError, zlib.error):
                # The tolerant reader reads what it can and reports where the damage starts.
                gzip, shape = is_gzip(path), "invalid"
            hashes[digest] = text_path
            pending.append(
                PendingFile(path, status.st_size, status.st_mtime_ns, digest, shape, gzip)
            )
        return pending

    # Ingestion.

    def ingest(
        self,
        kind: LogKind,
        files: Sequence[PendingFile],
        stats: IngestStats,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Read `files` into the activity table, in batches, recording each file read.

        A file that DuckDB cannot parse is read again by the tolerant streaming reader,
        which keeps every event before the damage and reports the file and line.
        """
        groups: dict[tuple[str, bool], list[PendingFile]] = {}
        for pending in files:
            groups.setdefault((pending.shape, pending.gzip), []).append(pending)
        for (shape, _gzip), members in groups.items():
            for batch in _batches(members):
                if shape != "invalid" and self._ingest_batch(kind, batch, stats):
                    if progress:
                        progress(sum(item.size for item in batch))
                    continue
                for pending in batch:
                    if shape == "invalid" or not self._ingest_batch(kind, [pending], stats):
                        self._ingest_tolerant(kind, pending, stats)
                    if progress:
                        progress(pending.size)

    def _ingest_batch(
        self, kind: LogKind, batch: Sequence[PendingFile], stats: IngestStats
    ) -> bool:
        import duckdb

        shape = batch[0].shape
        relation = _relation_sql(kind, shape, batch[0].gzip)
        paths = [_duckdb_path(item.path) for item in batch]
        connection = self.connection
        connection.execute("BEGIN TRANSACTION")
        try:
            before = _count(connection)
            connection.execute(
                f"INSERT INTO activity SELECT {kind.select_sql} FROM ({relation}) AS ev",  # noqa: S608
                [paths],
            )
            added = _count(connection) - before
            # Rows are only ever appended, so this batch's rowids start at `before`; the
            # scan touches only the new rows, whatever the size of the table.
            counts = connection.execute(
                "SELECT file, count(*), count(*) FILTER (WHERE identity_type = '<missing>') "
                "FROM activity WHERE rowid >= ? GROUP BY file ORDER BY file",
                [before],
            ).fetchall()
            per_file = {file: total for file, total, _missing in counts}
            for item in batch:
                self._record(
                    item.path,
                    item.size,
                    item.mtime_ns,
                    item.sha256,
                    kind.name,
                    shape,
                    int(per_file.get(str(item.path), 0)),
                    "read",
                    None,
                )
            connection.execute("COMMIT")
        except duckdb.Error as error:
            connection.execute("ROLLBACK")
            log.debug("batch read failed, retrying file by file", extra={"error": str(error)})
            return False
        stats.files_read += len(batch)
        stats.events += added
        for file, _total, missing in counts:
            if missing:
                line = _first_line_without_identity(Path(file))
                stats.warnings.append((file, line, _missing_message(int(missing))))
        return True

    def _ingest_tolerant(self, kind: LogKind, pending: PendingFile, stats: IngestStats) -> None:
        """Read a damaged file with the streaming reader and ingest the events it recovers."""
        import duckdb

        from warden.governance.jsonstream import StreamProblem, iter_events

        text_path = str(pending.path)
        recovered = 0
        problems = 0
        missing_lines: list[int] = []
        with tempfile.NamedTemporaryFile(
            "wb", suffix=".jsonl", dir=self.directory, delete=False
        ) as spool:
            for item in iter_events(pending.path):
                if isinstance(item, StreamProblem):
                    problems += 1
                    if problems <= MAX_WARNINGS_PER_FILE:
                        stats.warnings.append((text_path, item.line, item.message))
                    continue
                if kind.name == "cloudtrail" and not isinstance(
                    item.value.get("userIdentity"), dict
                ):
                    missing_lines.append(item.line)
                # A JSON escape can decode to a lone surrogate, which UTF-8 cannot encode
                # and DuckDB rejects; it is stored as "?".
                text = json.dumps(item.value, ensure_ascii=False)
                spool.write(text.encode("utf-8", "replace"))
                spool.write(b"\n")
                recovered += 1
        if problems > MAX_WARNINGS_PER_FILE:
            stats.warnings.append(
                (
                    text_path,
                    None,
                    f"{problems} problems in this file in all; only the first "
                    f"{MAX_WARNINGS_PER_FILE} are listed",
                )
            )
        spool_path = Path(spool.name)
        connection = self.connection
        connection.execute("BEGIN TRANSACTION")
        try:
            if recovered:
                relation = _relation_sql(kind, "lines", False, filename=text_path)
                connection.execute(
                    f"INSERT INTO activity SELECT {kind.select_sql} FROM ({relation}) AS ev",  # noqa: S608
                    [[_duckdb_path(spool_path)]],
                )
            status = "read" if not problems else "partial" if recovered else "failed"
            self._record(
                pending.path,
                pending.size,
                pending.mtime_ns,
                pending.sha256,
                kind.name,
                pending.shape,
                recovered,
                status,
                None,
            )
            connection.execute("COMMIT")
        except duckdb.Error as error:
            connection.execute("ROLLBACK")
            stats.warnings.append(
                (text_path, None, f"cannot store the events read from this file: {error}")
            )
            recovered = 0
        finally:
            spool_path.unlink(missing_ok=True)
        if missing_lines:
            stats.warnings.append(
                (text_path, missing_lines[0], _missing_message(len(missing_lines)))
            )
        stats.files_read += 1
        stats.events += recovered

    def _record(
        self,
        path: Path,
        size: int,
        mtime_ns: int,
        digest: str,
        source: str,
        shape: str | None,
        events: int,
        status: str,
        duplicate_of: str | None,
    ) -> None:
        self.connection.execute(
            "DELETE FROM ingested_files WHERE path = ? AND source = ?", [str(path), source]
        )
        self.connection.execute(
            "INSERT INTO ingested_files (path, size, mtime_ns, sha256, source, shape, events, "
            "status, duplicate_of, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                str(path),
                size,
                mtime_ns,
                digest,
                source,
                shape,
                events,
                status,
                duplicate_of,
                datetime.now(UTC),
            ],
        )


def _open_error(path: Path, error: Exception) -> str:
    text = str(error)
    if "lock" in text.lower():
        return (
            f"workspace {path.parent} is in use by another process, and DuckDB allows one "
            "writer at a time; wait for it to finish or give another --workspace"
        )
    if "not a valid DuckDB database" in text:
        return (
            f"workspace database {path} is not a DuckDB database; give an empty directory "
            "or one that an earlier audit created as --workspace"
        )
    return f"cannot open the workspace database {path}: {text}"


def _missing_message(count: int) -> str:
    noun = "event has" if count == 1 else "events have"
    return (
        f"{count} {noun} no userIdentity; kept as activity of no identity "
        f"(the line is the first such event)"
    )


def _first_line_without_identity(path: Path) -> int | None:
    from warden.governance.jsonstream import StreamItem, iter_events

    for item in iter_events(path):
        if isinstance(item, StreamItem) and not isinstance(item.value.get("userIdentity"), dict):
            return item.line
    return None


def _count(connection: duckdb.DuckDBPyConnection) -> int:
    row = connection.execute("SELECT count(*) FROM activity").fetchone()
    return int(row[0]) if row else 0


def _relation_sql(kind: LogKind, shape: str, gzip: bool, filename: str | None = None) -> str:
    """Build the query that yields one row per event with `kind`'s aliases and `filename`."""
    compression = "gzip" if gzip else "none"
    file_column = "filename" if filename is None else _sql_string(filename) + " AS filename"
    reader = (
        "read_json_objects(?, format='{format}', compression='" + compression + "', "
        f"filename=true, maximum_object_size={MAX_OBJECT_BYTES})"
    )
    if shape == "records":
        events = (
            f"SELECT unnest(json_extract(json, '$.Records[*]')) AS e, {file_column} "  # noqa: S608
            f"FROM {reader.format(format='auto')}"
        )
    else:
        # "auto" reads both JSON Lines and a single pretty-printed object per file.
        json_format = "array" if shape == "array" else "auto"
        events = f"SELECT json AS e, {file_column} FROM {reader.format(format=json_format)}"  # noqa: S608
    text_paths = "[" + ", ".join(_sql_string(path) for _alias, path in kind.fields) + "]"
    json_paths = "[" + ", ".join(_sql_string(path) for _alias, path in kind.json_fields) + "]"
    aliases = [
        f"t[{index}] AS {_identifier(alias)}"
        for index, (alias, _p) in enumerate(kind.fields, start=1)
    ]
    aliases += [
        f"j[{index}] AS {_identifier(alias)}"
        for index, (alias, _p) in enumerate(kind.json_fields, start=1)
    ]
    # Every interpolated value is a constant of this module or quoted by _sql_string.
    return (
        f"SELECT {', '.join(aliases)}, no_identity, filename FROM ("  # noqa: S608
        f"SELECT json_extract_string(e, {text_paths}) AS t, json_extract(e, {json_paths}) AS j, "
        f"json_extract(e, {_sql_string(kind.identity_path)}) IS NULL AS no_identity, filename "
        f"FROM ({events}))"
    )


def _duckdb_path(path: Path) -> str:
    """Return `path` with DuckDB's glob characters escaped, so that it names one file.

    DuckDB expands `*`, `?` and `[...]` in every path it reads; a file named `*.json` would
    otherwise read its whole directory. A bracket holding one character matches just it.
    """
    return re.sub(r"([*?\[])", r"[\1]", str(path))


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _batches(files: Sequence[PendingFile]) -> Iterable[list[PendingFile]]:
    batch: list[PendingFile] = []
    size = 0
    for pending in files:
        if batch and (len(batch) >= BATCH_FILES or size + pending.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(pending)
        size += pending.size
    if batch:
        yield batch


def _expand(roots: Iterable[Path], patterns: Sequence[str], stats: IngestStats) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            for directory, _subdirs, names in os.walk(root):
                for name in sorted(names):
                    if any(Path(name).match(pattern) for pattern in patterns):
                        found.append(Path(directory) / name)
        elif root.exists():
            found.append(root)
        else:
            stats.warnings.append((str(root), None, "not found; check the path"))
    return sorted(found)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
