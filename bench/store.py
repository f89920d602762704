"""Loading registration entries at server start, next to a plain SELECT of the same rows.

For each database (SQLite, and PostgreSQL when initdb and pg_ctl are installed) and each
size, the benchmark fills a fresh datastore, then measures in two fresh processes:

- the floor: the same four SELECTs the loader runs, read through the same driver (sqlite3 or
  psycopg with a server-side cursor) and thrown away;
- the load: `Datastore.iter_all_entries()` into a list, as a server builds its entry cache.

Each process reports its wall time and its peak resident memory (`ru_maxrss`). The ratio
compares the load with the floor measured in the same run.

    python -m bench --only store [--quick]
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench --only store"

ENTRY_COLUMNS = (
    "id, spiffe_id, parent_id, similarity_key, owner, description, x509_svid_ttl, "
    "jwt_svid_ttl, admin, downstream, hint, expires_at, revision, created_at, updated_at, "
    "last_delivered_at"
)
FLOOR_QUERIES = (
    "SELECT id, spiffe_id, parent_id, owner, x509_svid_ttl, jwt_svid_ttl, admin, downstream, "
    "hint, expires_at, description, revision, created_at, updated_at, last_delivered_at "
    "FROM registration_entries ORDER BY id",
    "SELECT entry_id, type, value FROM entry_selectors ORDER BY entry_id, position",
    "SELECT entry_id, value FROM entry_dns_names ORDER BY entry_id, position",
    "SELECT entry_id, trust_domain FROM entry_federates_with ORDER BY entry_id, position",
)


def _generate(count: int, now: Any) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Yield realistic Kubernetes-style entries: 3 selectors each, 500 namespaces, 2,000
    nodes as parents, a DNS name on one entry in ten."""
    for index in range(count):
        entry_id = str(uuid.UUID(int=(index * 2654435761) % (2**122), version=4))
        namespace = f"team{index % 500}"
        spiffe_id = f"spiffe://example.org/ns/{namespace}/sa/svc{index}"
        parent_id = f"spiffe://example.org/spire/agent/k8s_psat/c{index % 20}/node{index % 2000}"
        selectors = [
            ("k8s", f"ns:{namespace}"),
            ("k8s", f"sa:svc{index}"),
            ("k8s", f"pod-label:app:svc{index % 1000}"),
        ]
        digest = hashlib.sha256()
        for part in (spiffe_id, parent_id, *sorted(f"{t}:{v}" for t, v in selectors)):
            digest.update(part.encode() + b"\0")
        entry = (
            entry_id, spiffe_id, parent_id, digest.hexdigest(), f"team-{index % 500}", "",
            0, 0, False, False, "", None, 1, now, now, None,
        )  # fmt: skip
        children = [(entry_id, position, t, v) for position, (t, v) in enumerate(selectors)]
        if index % 10 == 0:
            children.append((entry_id, -1, "dns", f"svc{index}.example.org"))
        yield entry, children


def _fill_sqlite(path: Path, count: int) -> None:
    import sqlite3

    from warden.store import Datastore
    from warden.store.columns import to_micros

    Datastore.open(path).close()
    now = to_micros(datetime.now(UTC))
    connection = sqlite3.connect(path)
    entries: list[tuple[Any, ...]] = []
    selectors: list[tuple[Any, ...]] = []
    dns_names: list[tuple[Any, ...]] = []

    def flush() -> None:
        connection.executemany(
            f"INSERT INTO registration_entries ({ENTRY_COLUMNS}) VALUES ({', '.join('?' * 16)})",  # noqa: S608
            entries,
        )
        connection.executemany("INSERT INTO entry_selectors VALUES (?, ?, ?, ?)", selectors)
        connection.executemany("INSERT INTO entry_dns_names VALUES (?, 0, ?)", dns_names)
        entries.clear()
        selectors.clear()
        dns_names.clear()

    for entry, children in _generate(count, now):
        entries.append(entry)
        for child in children:
            if child[1] < 0:
                dns_names.append((child[0], child[3]))
            else:
                selectors.append(child)
        if len(entries) >= 50_000:
            flush()
    flush()
    connection.commit()
    connection.close()


def _fill_postgres(url: str, conninfo: str, count: int) -> None:
    import psycopg

    from warden.store import Datastore

    Datastore.open(url).close()
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        now = datetime.now(UTC)
        with (
            cursor.copy(f"COPY registration_entries ({ENTRY_COLUMNS}) FROM STDIN") as entries,
            # One COPY at a time per connection, so children go to a list first.
        ):
            children_rows: list[tuple[Any, ...]] = []
            for entry, children in _generate(count, now):
                entries.write_row(entry)
                children_rows.extend(children)
        with cursor.copy("COPY entry_selectors FROM STDIN") as copy:
            for row in children_rows:
                if row[1] >= 0:
                    copy.write_row(row)
        with cursor.copy("COPY entry_dns_names FROM STDIN") as copy:
            for row in children_rows:
                if row[1] < 0:
                    copy.write_row((row[0], 0, row[3]))
        cursor.execute("ANALYZE")


def _peak_mib() -> float:
    """Return this process's peak resident memory in MiB.

    Linux's VmHWM belongs to the process image, while `ru_maxrss` survives exec and so can
    report the parent's size for a freshly spawned child; VmHWM is read when available.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(kind: str, url: str) -> dict[str, float]:
    """Run in a fresh process: time one load or one floor read, and report peak memory."""
    if kind == "load":
        from warden.store import Datastore

        store = Datastore.open(url, migrate=False)
        started = time.perf_counter()
        entries = list(store.iter_all_entries())
        seconds = time.perf_counter() - started
        rows = len(entries)
    else:
        started = time.perf_counter()
        rows = 0
        if url.startswith("postgres"):
            import psycopg

            with psycopg.connect(url) as connection:
                for number, query in enumerate(FLOOR_QUERIES):
                    with connection.cursor(name=f"floor{number}") as cursor:
                        cursor.itersize = 5000
                        cursor.execute(query)
                        for _row in cursor:
                            rows += 1
        else:
            import sqlite3

            connection = sqlite3.connect(url)
            for query in FLOOR_QUERIES:
                for _row in connection.execute(query):
                    rows += 1
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_mib": _peak_mib()}


def _in_child(kind: str, url: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.store", kind, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def _row(backend: str, count: int, url: str, floor_url: str) -> str:
    floor = _in_child("floor", floor_url)
    load = _in_child("load", url)
    return (
        f"| {backend} | {count:,} | {load['seconds']:.1f} s | {load['peak_mib']:.0f} MiB | "
        f"{floor['seconds']:.1f} s ({int(floor['rows']):,} rows) | {floor['peak_mib']:.0f} MiB | "
        f"{load['seconds'] / floor['seconds']:.1f}× |"
    )


AUDIT_BATCHES = (1, 10, 100, 1000)
AUDIT_INSERT = (
    "INSERT INTO audit_plain (seq, recorded_at, actor, action, subject, details, server_id, "
    "prev_hash, record_hash) VALUES ({})"
)


def _copy_sqlite_table(connection: Any, source: str, target: str) -> None:
    """Create `target` with the columns and indexes of `source`, but not its triggers."""
    statements = connection.execute(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
        "AND type IN ('table', 'index') ORDER BY type DESC",
        (source,),
    ).fetchall()
    for _kind, sql in statements:
        copied = sql.replace(source, target).replace(
            "CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1
        )
        copied = copied.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
        copied = copied.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", 1)
        connection.execute(copied)


def _audit_rates(url: str, plain_url: str, records: int) -> list[str]:
    """Measure audit appends per second by batch size, next to plain INSERTs of the same
    rows, one transaction per batch, through the same driver."""
    from warden.store import AuditEvent, Datastore
    from warden.store.columns import to_micros

    rows: list[str] = []
    store = Datastore.open(url)
    postgres = store.is_postgres
    next_plain_seq = 10_000_000
    try:
        for batch in AUDIT_BATCHES:
            events = [
                AuditEvent(
                    action="svid.x509.sign",
                    actor="spiffe://example.org/spire/agent/join_token/a",
                    subject=f"spiffe://example.org/w{index}",
                    details={"serial": f"{index:032x}", "ttl": 3600},
                )
                for index in range(batch)
            ]
            rounds = max(records // batch, 3)
            started = time.perf_counter()
            for _ in range(rounds):
                store.append_audit(events)
            chained = rounds * batch / (time.perf_counter() - started)

            now = datetime.now(UTC)
            stamp: Any = now if postgres else to_micros(now)
            if postgres:
                import psycopg

                connection: Any = psycopg.connect(plain_url)
                # The same columns, indexes and constraints as audit_log, without its
                # append-only triggers.
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS audit_plain (LIKE audit_log INCLUDING ALL)"
                )
                connection.commit()
                statement = AUDIT_INSERT.format(", ".join(["%s"] * 9))
            else:
                import sqlite3

                connection = sqlite3.connect(plain_url, isolation_level=None)
                connection.execute("PRAGMA synchronous = FULL")
                _copy_sqlite_table(connection, "audit_log", "audit_plain")
                statement = AUDIT_INSERT.format(", ".join("?" * 9))
            # The floor inserts the same rows into a copy of the table without the
            # append-only triggers and the hash chain.
            started = time.perf_counter()
            for _ in range(rounds):
                rows_to_insert = []
                for event in events:
                    next_plain_seq += 1
                    rows_to_insert.append(
                        (next_plain_seq, stamp, event.actor, event.action, event.subject,
                         '{"serial": "0", "ttl": 3600}', "", "0" * 64, "0" * 64)
                    )  # fmt: skip
                if postgres:
                    with connection.cursor() as cursor:
                        cursor.executemany(statement, rows_to_insert)
                    connection.commit()
                else:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(statement, rows_to_insert)
                    connection.execute("COMMIT")
            plain = rounds * batch / (time.perf_counter() - started)
            connection.close()
            rows.append(
                f"| {'PostgreSQL 15' if postgres else 'SQLite'} | {batch} | {chained:,.0f} /s | "
                f"{plain:,.0f} /s | {chained / plain:.2f} |"
            )
    finally:
        store.close()
    return rows


def run(quick: bool) -> str:
    sizes = [20_000] if quick else [100_000, 1_000_000]
    audit_records = 500 if quick else 5000
    rows: list[str] = []
    audit_rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="warden-bench-store-") as scratch:
        for count in sizes:
            path = Path(scratch) / f"entries-{count}.sqlite3"
            _fill_sqlite(path, count)
            rows.append(_row("SQLite", count, str(path), str(path)))
            path.unlink()
        audit_path = Path(scratch) / "audit.sqlite3"
        audit_rows += _audit_rates(str(audit_path), str(audit_path), audit_records)
        sys.path.insert(0, str(ROOT / "tests"))
        from pg import PostgresCluster, find_bindir

        if find_bindir() is None:
            notes.append("PostgreSQL was not measured: initdb and pg_ctl are not installed.")
        else:
            cluster = PostgresCluster.start()
            try:
                for count in sizes:
                    url = cluster.create_database(f"bench_{count}")
                    conninfo = cluster.conninfo(f"bench_{count}")
                    _fill_postgres(url, conninfo, count)
                    floor_url = f"postgresql://postgres@{cluster.host}:{cluster.port}/bench_{count}"
                    rows.append(_row("PostgreSQL 15", count, url, floor_url))
                    cluster.drop_database(f"bench_{count}")
                audit_url = cluster.create_database("bench_audit")
                audit_plain = f"postgresql://postgres@{cluster.host}:{cluster.port}/bench_audit"
                audit_rows += _audit_rates(audit_url, audit_plain, audit_records)
            finally:
                cluster.stop()
    lines = [
        "## Datastore: loading registration entries at server start",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}`. Each entry has 3 selectors (one "
        "in ten also a DNS name); load = `Datastore.iter_all_entries()` into a list, as the "
        "server fills its entry cache; floor = the same four SELECTs through the same driver, "
        "rows discarded. Each runs in a fresh process; peak memory is that process's "
        "peak resident set (VmHWM), interpreter and imports included. The PostgreSQL "
        "cluster is a local test cluster (fsync off) on the same machine.",
        "",
        "| database | entries | load | load peak memory | floor | floor peak memory | "
        "load / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Aim: 1,000,000 entries loaded in 60 s or less within 2 GB.",
        "",
        "## Datastore: audit log appends",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}`. Records appended per second "
        "with `Datastore.append_audit` (hash chain, chain head locked, one transaction per "
        "batch) next to plain INSERTs of the same number of rows through the same driver, "
        "one transaction per batch. SQLite runs with synchronous=FULL in both columns; the "
        "PostgreSQL test cluster has fsync off, so its figures leave out disk flushes.",
        "",
        "| database | records per batch | append_audit | plain INSERT | ratio |",
        "|---|---:|---:|---:|---:|",
        *audit_rows,
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], sys.argv[2])))
