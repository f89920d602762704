"""Token exchange through the HTTP API, and database lease cycles against PostgreSQL.

Token exchange: a server runs in its own process (bench/_credentials_server.py) with the
HTTP API on loopback, plain HTTP, SQLite datastore. This process sends RFC 8693 requests
over 1 and over 50 concurrent keep-alive connections and reports requests per second and
latency percentiles. Each exchange validates the JWT-SVID, signs an RS256
token and group-commits its audit record. The floor is `GET /bench/empty` on the same
listener in the same run, a route that returns 204 and does nothing else. A second
exchange series sends single-use subject tokens (with `jti`), which adds a write to the
replay cache in the datastore.

Database leases: a throwaway PostgreSQL cluster (tests/pg.py, initdb and pg_ctl) and a
management role with CREATEROLE. One cycle issues a lease (datastore row, audit record,
CREATE ROLE in one transaction) and revokes it (NOLOGIN, session check, disarming what the
user owns when it owns anything, REASSIGN and DROP OWNED, DROP ROLE, datastore update, audit
record). The floor is a bare CREATE ROLE and
DROP ROLE pair on one open connection, in the same run.

    python -m bench --only credentials [--quick]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench --only credentials"
AUDIENCE = "sts.amazonaws.com"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


# -- token exchange --------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests.

    A plain asyncio stream, because httpx's connection pool costs more than the server under
    50 concurrent requests and would be measured instead of it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return int(head[9:12]), body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _post_form(path: str, form: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    body = urlencode(form).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _load(
    port: int, concurrency: int, total: int, request: Callable[[int], bytes]
) -> dict[str, float]:
    """Send `total` requests over `concurrency` connections; return rate and latencies in ms."""
    connections = [
        _Connection(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(concurrency)
    ]
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(connection: _Connection) -> None:
        for number in counter:
            started = time.perf_counter()
            status, body = await connection.send(request(number))
            latencies.append((time.perf_counter() - started) * 1000)
            if status >= 300:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(connection) for connection in connections))
        seconds = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.writer.close()
    return {
        "rate": total / seconds,
        "p50": statistics.median(latencies),
        "p99": _percentile(latencies, 0.99),
    }


def _exchange_section(quick: bool) -> list[str]:
    counts = {1: 200, 50: 1000} if quick else {1: 1000, 50: 5000}
    single_use = counts[50]
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as directory:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench._credentials_server", directory, str(single_use)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            setup = json.loads(process.stdout.readline())
            results = asyncio.run(_exchange_runs(setup, counts))
        finally:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)

    lines = [
        "### Token exchange (POST /v1/token)",
        "",
        "| clients | request | requests/s | p50 ms | p99 ms | rate vs floor |",
        "|---|---|---|---|---|---|",
    ]
    for clients in sorted(counts):
        floor = results[("floor", clients)]
        for kind, label in (
            ("floor", "GET /bench/empty (floor)"),
            ("exchange", "token exchange"),
            ("single_use", "token exchange, subject with jti"),
        ):
            result = results.get((kind, clients))
            if result is None:
                continue
            ratio = result["rate"] / floor["rate"]
            lines.append(
                f"| {clients} | {label} | {result['rate']:.0f} | {result['p50']:.1f} "
                f"| {result['p99']:.1f} | {ratio:.2f} |"
            )
    lines += [
        "",
        f"Requests: {counts[1]} with 1 client, {counts[50]} with 50. The server and this client "
        "share the machine's cores, so the client's own cost is part of every figure; compare "
        "each exchange with the floor beside it. Latency under 50 concurrent clients is bounded "
        "below by 50 divided by the rate (Little's law), so p99 under 10 ms at 50 clients would "
        "need more than 5,000 exchanges per second from one Python process.",
        "",
    ]
    return lines


async def _exchange_runs(
    setup: dict[str, Any], counts: dict[int, int]
) -> dict[tuple[str, int], dict[str, float]]:
    port = setup["port"]
    single_use = iter(setup["single_use"])

    def form(token: str) -> dict[str, str]:
        return {
            "grant_type": GRANT,
            "subject_token": token,
            "subject_token_type": JWT_TYPE,
            "audience": AUDIENCE,
        }

    empty = _get("/bench/empty")
    reusable = _post_form("/v1/token", form(setup["reusable"]))

    def floor(number: int) -> bytes:
        return empty

    def exchange(number: int) -> bytes:
        return reusable

    def exchange_single_use(number: int) -> bytes:
        return _post_form("/v1/token", form(next(single_use)))

    # 20 exchanges first, to warm the signer, the audit writer and the datastore connections.
    await _load(port, 1, 20, exchange)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for clients, total in sorted(counts.items()):
        results[("floor", clients)] = await _load(port, clients, total, floor)
        results[("exchange", clients)] = await _load(port, clients, total, exchange)
    results[("single_use", 50)] = await _load(port, 50, counts[50], exchange_single_use)
    return results


# -- database leases ---------------------------------------------------------------------------


def _lease_section(quick: bool) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg import PostgresCluster, find_bindir

    title = ["### Database leases (create and revoke)", ""]
    if find_bindir() is None:
        return [*title, "Skipped: PostgreSQL binaries (initdb, pg_ctl) not found.", ""]
    cycles = 30 if quick else 200
    cluster = PostgresCluster.start()
    try:
        for statement in (
            "CREATE ROLE warden_manager LOGIN CREATEROLE",
            "GRANT pg_signal_backend TO warden_manager",
            "CREATE ROLE orders_owner NOLOGIN",
            "GRANT orders_owner TO warden_manager",
            "CREATE DATABASE orders OWNER orders_owner",
        ):
            cluster.execute(statement)
        url = f"postgresql://warden_manager@127.0.0.1:{cluster.port}/orders"
        floor_rate = _bare_role_rate(url, cycles)
        with tempfile.TemporaryDirectory(prefix="warden-bench-") as directory:
            lease_rate = asyncio.run(_lease_rate(url, Path(directory), cycles))
    finally:
        cluster.stop()
    return [
        *title,
        "| operation | cycles/s | ms per cycle | rate vs floor |",
        "|---|---|---|---|",
        f"| CREATE ROLE + DROP ROLE on one connection (floor) | {floor_rate:.0f} "
        f"| {1000 / floor_rate:.1f} | 1.00 |",
        f"| issue lease + revoke lease | {lease_rate:.0f} | {1000 / lease_rate:.1f} "
        f"| {lease_rate / floor_rate:.2f} |",
        "",
        f"Cycles: {cycles}, one after another, SQLite datastore. A revocation opens one extra "
        "connection to run REASSIGN OWNED and DROP OWNED in a transaction.",
        "",
    ]


def _bare_role_rate(url: str, cycles: int) -> float:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        started = time.perf_counter()
        for number in range(cycles):
            name = sql.Identifier(f"floor-{number}")
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
            connection.execute(sql.SQL("DROP ROLE {}").format(name))
        return cycles / (time.perf_counter() - started)


async def _lease_rate(url: str, directory: Path, cycles: int) -> float:
    from warden.credentials import (
        ConnectionSettings,
        DatabaseBroker,
        DatabaseSettings,
        RoleSettings,
        parse_patterns,
    )
    from warden.store import Datastore

    settings = DatabaseSettings(
        {"orders": ConnectionSettings("orders", url, "orders_owner")},
        {
            "reader": RoleSettings(
                "reader",
                "orders",
                (
                    "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' "
                    "VALID UNTIL '{{expiration}}'",
                ),
                parse_patterns(["spiffe://example.org/orders/*"]),
                default_ttl=timedelta(minutes=5),
            )
        },
    )
    datastore = Datastore.for_data_dir(directory)
    broker = DatabaseBroker(settings, datastore, clock=lambda: datetime.now(UTC))
    try:
        # One warm-up cycle opens the pooled management connection.
        issued = await broker.issue(
            "reader", "spiffe://example.org/orders/api", ["team"], actor="b"
        )
        await broker.revoke(issued.lease.lease_id, actor="bench")
        started = time.perf_counter()
        for _ in range(cycles):
            issued = await broker.issue(
                "reader", "spiffe://example.org/orders/api", ["team"], actor="bench"
            )
            await broker.revoke(issued.lease.lease_id, actor="bench")
        return cycles / (time.perf_counter() - started)
    finally:
        await broker.close()
        datastore.close()


def run(quick: bool) -> str:
    command = COMMAND + (" --quick" if quick else "")
    lines = ["## Credentials: token exchange and database leases", "", f"Command: `{command}`.", ""]
    lines += _exchange_section(quick)
    lines += _lease_section(quick)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
