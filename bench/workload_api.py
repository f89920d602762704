"""Workload API latency from a warm cache, and the agent's memory with many cached SVIDs.

The agent runs in its own process with a local CA (bench/_workload_agent.py); clients run in
other processes, each connection sending sequential calls. The reference is an empty unary
gRPC call to a grpc.aio server on a Unix socket in the same run: the transport's floor.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "_workload_agent.py"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class _Agent:
    def __init__(self, directory: Path, entries: int) -> None:
        self.directory = directory
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "agent", str(directory), str(entries)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark agent did not start")
        self.report = json.loads(line)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _measure(directory: Path, kind: str, connections: int, requests: int) -> list[float]:
    # At most 50 connections per client process, so the client side is not one process's
    # event loop; every connection sends its calls sequentially.
    processes = []
    remaining = connections
    while remaining > 0:
        share = min(50, remaining)
        remaining -= share
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    "client",
                    str(directory),
                    kind,
                    str(share),
                    str(requests),
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
        )
    latencies: list[float] = []
    for process in processes:
        stdout, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(
                f"benchmark client for {kind} failed with status {process.returncode}"
            )
        latencies.extend(json.loads(stdout))
    return latencies


def run(quick: bool) -> str:
    requests_single = 200 if quick else 2000
    requests_many = 10 if quick else 50
    memory_entries = 1000 if quick else 10_000

    directory = Path(tempfile.mkdtemp(prefix="warden-bench-", dir="/tmp"))
    rows = []
    try:
        agent = _Agent(directory, 1)
        try:
            for connections, requests in ((1, requests_single), (100, requests_many)):
                floor = _measure(directory, "floor", connections, requests)
                floor_p50 = statistics.median(floor)
                floor_p99 = _percentile(floor, 0.99)
                rows.append(
                    (
                        "empty unary call (floor)",
                        connections,
                        len(floor),
                        floor_p50,
                        floor_p99,
                        1.0,
                        1.0,
                    )
                )
                for kind, label in (("x509", "FetchX509SVID"), ("jwt", "FetchJWTSVID")):
                    values = _measure(directory, kind, connections, requests)
                    p50 = statistics.median(values)
                    p99 = _percentile(values, 0.99)
                    rows.append(
                        (
                            label,
                            connections,
                            len(values),
                            p50,
                            p99,
                            p50 / floor_p50,
                            p99 / floor_p99,
                        )
                    )
        finally:
            agent.stop()

        (directory / "memory").mkdir()
        started = time.monotonic()
        memory = _Agent(directory / "memory", memory_entries)
        fill_seconds = time.monotonic() - started
        memory.stop()
        report = memory.report
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    command = f"python -m bench --only workload_api{' --quick' if quick else ''}"
    lines = [
        "## Workload API (agent)",
        "",
        f"Command: `{command}`. The agent runs in its own process with a local CA, serving from "
        "a warm cache; client processes open one gRPC connection per client over the agent's "
        "Unix socket, each sending calls one after another. The reference is an empty unary "
        "gRPC call to a grpc.aio server on a Unix socket in the same run. FetchX509SVID is "
        "timed to its first message (a one-shot fetch); every call includes attestation by "
        "the unix attestor and the relay that reads the caller's SO_PEERCRED.",
        "",
        "| call | clients | calls | p50 (ms) | p99 (ms) | p50 / floor | p99 / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, connections, count, p50, p99, ratio50, ratio99 in rows:
        lines.append(
            f"| {label} | {connections} | {count} | {p50 * 1000:.2f} | {p99 * 1000:.2f} | "
            f"{ratio50:.1f} | {ratio99:.1f} |"
        )
    cached = report["svids"]
    growth_mib = (report["rss_after_kib"] - report["rss_before_kib"]) / 1024
    lines += [
        "",
        f"Memory: the agent holding {cached} cached X509-SVIDs (each with its key) used "
        f"{report['rss_after_kib'] / 1024:.0f} MiB resident, {growth_mib:.0f} MiB more than "
        f"before the entries arrived; peak resident size {report['peak_kib'] / 1024:.0f} MiB "
        f"(ru_maxrss, which includes the local CA signing all {cached} SVIDs in the same "
        f"process). Filling the cache took {fill_seconds:.1f} s. Aim: 10k SVIDs in 200 MB or "
        "less; p99 at or under 5 ms, 1 ms as the goal.",
        "",
    ]
    return "\n".join(lines)
