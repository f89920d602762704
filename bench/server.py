"""The server: X509-SVID signing through the full signing path, and entries at scale.

Signing: CSRs go through `SigningService.sign_entries`, the path an agent's
`BatchNewX509SVID` takes after authentication: authorisation against the agent's entries,
the CSR signature check, the certificate, and the group-committed audit record in SQLite.
The floor is OpenSSL's ECDSA P-256 rate from `openssl speed -seconds 1 ecdsap256` in the same
run, combined as 1 / (1/sign + 1/verify) because each SVID costs one verify and one sign.
It is measured once in the server process alone, and once with one signing worker process
per core.

Entries: a SQLite datastore is filled with N entries, then a fresh process loads them the
way the server does at start (datastore rows into the in-memory entry index) and reports its
wall time and peak memory; beside it, the plain SELECTs of the same rows through the same
driver. Authorisation latency is measured on an index of 1M entries (100k with --quick) in
which each agent holds 1,000.

    python -m bench --only server [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.pki import make_csrs, openssl_ecdsa_p256

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench --only server"
# Signing batches in flight at once, as from that many agents.
IN_FLIGHT = 4


async def _signing_rate(workers: int, csrs: list[bytes], batch: int, audit: bool = True) -> float:
    from prometheus_client import CollectorRegistry

    from warden.server.app import WardenServer
    from warden.server.entry_cache import make_entry
    from warden.server.metrics import Metrics
    from warden.server.options import ServerOptions
    from warden.spiffe import TrustDomain

    with tempfile.TemporaryDirectory(prefix="warden-bench-") as directory:
        options = ServerOptions(
            trust_domain=TrustDomain("example.org"),
            data_dir=Path(directory) / "data",
            bind_address="127.0.0.1",
            bind_port=0,
            socket_path=Path(directory) / "admin" / "api.sock",
            key_manager="memory",
            signing_workers=workers,
        )
        server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
        await server.start()
        try:
            agent = "spiffe://example.org/spire/agent/join_token/bench"
            entries = [
                make_entry(
                    id=f"entry-{index}",
                    spiffe_id=f"spiffe://example.org/workload/{index}",
                    parent_id=agent,
                    selectors=[f"unix:uid:{index}"],
                    owner="bench",
                    revision=1,
                )
                for index in range(batch)
            ]
            server.cache.load(entries)
            # Warm up: start the workers and parse the CA in each.
            await server.signing.sign_entries(agent, list(zip(entries, csrs[:batch], strict=True)))
            if not audit:
                # The CSR check and the certificate only: the floor of the path above.
                started = time.perf_counter()
                for entry, csr in zip(entries * (len(csrs) // batch), csrs, strict=False):
                    server.signing.sign_x509(
                        entry.spiffe_id, csr, options.default_x509_svid_ttl, ()
                    )
                return len(csrs) / (time.perf_counter() - started)

            async def one_batch(offset: int) -> int:
                authorized = server.hub.authorized(agent, frozenset())
                items = [
                    (authorized[entry.id], csr)
                    for entry, csr in zip(entries, csrs[offset : offset + batch], strict=True)
                ]
                return len(await server.signing.sign_entries(agent, items))

            # Several batches in flight, as from several agents: one batch is signed while
            # the audit records of another are committed.
            started = time.perf_counter()
            offsets = list(range(0, len(csrs) - batch + 1, batch))
            signed = 0
            for group in range(0, len(offsets), IN_FLIGHT):
                counts = await asyncio.gather(
                    *(one_batch(o) for o in offsets[group : group + IN_FLIGHT])
                )
                signed += sum(counts)
            elapsed = time.perf_counter() - started
        finally:
            await server.stop()
    return signed / elapsed


def _cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def _signing_section(quick: bool) -> list[str]:
    count = 1000 if quick else 6000
    batch = 100
    csrs = make_csrs(count)
    openssl = openssl_ecdsa_p256()
    single = asyncio.run(_signing_rate(0, csrs, batch))
    unaudited = asyncio.run(_signing_rate(0, csrs, batch, audit=False))
    cores = _cores()
    pooled = asyncio.run(_signing_rate(cores, csrs, batch)) if cores > 1 else None
    lines = [
        "### X509-SVID signing through the server's signing path",
        "",
        f"{count:,} CSRs (EC P-256) in batches of {batch}: authorisation, CSR signature check, "
        "certificate, audit record group-committed to SQLite.",
        "",
        "| configuration | SVIDs/s | per core | floor 1/(1/sign+1/verify) | per core / floor |",
        "|---|---:|---:|---:|---:|",
    ]
    floor = openssl.sign_and_verify if openssl else None
    floor_text = f"{floor:,.0f}" if floor else "n/a"

    def ratio(value: float) -> str:
        return f"{value / floor:.2f}" if floor else "n/a"

    lines.append(
        f"| CSR check and certificate only, no authorisation or audit record | {unaudited:,.0f} | "
        f"{unaudited:,.0f} | {floor_text} | {ratio(unaudited)} |"
    )
    lines.append(
        f"| full path, server process only | {single:,.0f} | {single:,.0f} | {floor_text} | {ratio(single)} |"
    )
    if pooled is not None:
        lines.append(
            f"| full path, {cores} signing workers + server process ({cores} cores) | {pooled:,.0f} | "
            f"{pooled / cores:,.0f} | {floor_text} | {ratio(pooled / cores)} |"
        )
    if openssl:
        lines += [
            "",
            f"OpenSSL in the same run: {openssl.sign:,.0f} signs/s and {openssl.verify:,.0f} "
            "verifies/s on one core.",
        ]
    return lines


# -- entries at scale ---------------------------------------------------------------------------


def _load_in_child(path: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.server", "load", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def _measure_load(path: str) -> dict[str, float]:
    """Child process: load every entry into the server's index, as at server start."""
    from bench.store import _peak_mib
    from warden.server.convert import cached_entry
    from warden.server.entry_cache import EntryCache
    from warden.store import Datastore

    store = Datastore.open(path, migrate=False)
    started = time.perf_counter()
    cache = EntryCache("spiffe://example.org/spire/server")
    for entry in store.iter_all_entries():
        cache.upsert(cached_entry(entry))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(cache), "peak_mib": _peak_mib()}


def _entries_section(quick: bool) -> list[str]:
    from bench.store import _fill_sqlite, _in_child

    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    lines = [
        "### Registration entries at server start (SQLite)",
        "",
        "| entries | load into the server's index | peak memory | plain SELECT floor | floor peak memory | load / floor |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="warden-bench-") as directory:
            path = str(Path(directory) / "datastore.sqlite3")
            _fill_sqlite(Path(path), size)
            floor = _in_child("floor", path)
            load = _load_in_child(path)
        lines.append(
            f"| {size:,} | {load['seconds']:.1f} s | {load['peak_mib']:.0f} MiB | "
            f"{floor['seconds']:.1f} s | {floor['peak_mib']:.0f} MiB | {load['seconds'] / floor['seconds']:.1f}× |"
        )
    return lines


def _authorization_section(quick: bool) -> list[str]:
    from warden.server.entry_cache import EntryCache, make_entry

    total = 100_000 if quick else 1_000_000
    per_agent = 1000
    agents = total // per_agent
    cache = EntryCache("spiffe://example.org/spire/server")
    for index in range(total):
        namespace = f"team{index % 500}"
        cache.upsert(
            make_entry(
                id=f"{index:032x}",
                spiffe_id=f"spiffe://example.org/ns/{namespace}/sa/svc{index}",
                parent_id=f"spiffe://example.org/spire/agent/k8s_psat/c1/node{index % agents}",
                selectors=(f"k8s:ns:{namespace}", f"k8s:sa:svc{index}"),
                owner=f"team-{index % 500}",
                revision=1,
            )
        )
    samples = []
    for round_number in range(2000):
        agent = f"spiffe://example.org/spire/agent/k8s_psat/c1/node{round_number % agents}"
        started = time.perf_counter()
        held = cache.authorized_entries(agent, frozenset({"k8s_psat:cluster:c1"}), 100)
        samples.append(time.perf_counter() - started)
        assert len(held) == per_agent
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99)] * 1000
    return [
        "### Computing one agent's authorised entries",
        "",
        f"Index of {total:,} entries, {per_agent:,} of them held by each agent; 2,000 "
        "computations over different agents.",
        "",
        "| p50 | p99 |",
        "|---:|---:|",
        f"| {p50:.2f} ms | {p99:.2f} ms |",
    ]


def run(quick: bool) -> str:
    lines = [
        "## Server: signing and entries at scale",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}`.",
        "",
        *_signing_section(quick),
        "",
        *_entries_section(quick),
        "",
        *_authorization_section(quick),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "load":
        print(json.dumps(_measure_load(sys.argv[2])))
    else:
        print(run("--quick" in sys.argv))
