"""Processes for bench/workload_api.py: an agent with a local CA, and load-generating clients.

python bench/_workload_agent.py agent DIR ENTRIES
    Start a Workload API endpoint at DIR/api.sock whose cache holds ENTRIES SVIDs (one of
    them for this uid), and an empty unary gRPC service at DIR/floor.sock. Prints one JSON
    line when ready, with the resident memory before and after filling the cache.

python bench/_workload_agent.py client DIR KIND CONNECTIONS REQUESTS
    Open CONNECTIONS gRPC connections and send REQUESTS sequential calls on each, all
    connections at once; KIND is floor, x509 or jwt. Prints the latencies in seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.agent import (
    CompositeAttestor,
    Entry,
    EntryUpdate,
    Manager,
    SignedJwtSvid,
    WorkloadEndpoint,
    X509SvidRequest,
    X509SvidResult,
)
from warden.agent.attestor import UnixAttestor
from warden.api import workload_pb2, workload_pb2_grpc
from warden.spiffe import (
    Bundle,
    JwtAuthority,
    JwtSigner,
    Selector,
    SpiffeId,
    TrustDomain,
    build_self_signed_ca,
    build_x509_svid_from_csr,
    mint_jwt_svid,
)

TRUST_DOMAIN = TrustDomain("bench.example")
HEADER = (("workload.spiffe.io", "true"),)
FLOOR_METHOD = "/bench.Floor/Empty"


class LocalSigner:
    """Signs like the server, in process, so the benchmark needs no server."""

    def __init__(self, entries: dict[str, Entry]) -> None:
        now = datetime.now(UTC)
        self.entries = entries
        self.ca = build_self_signed_ca(ec.generate_private_key(ec.SECP256R1()), TRUST_DOMAIN, now)
        self.jwt = JwtSigner(ec.generate_private_key(ec.SECP256R1()), "bench-jwt")
        self.bundle = Bundle(
            TRUST_DOMAIN,
            (self.ca.certificate,),
            (JwtAuthority(self.jwt.key_id, self.jwt.public_key()),),
        )

    async def sign_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        now = datetime.now(UTC)
        results = []
        for request in requests:
            leaf = build_x509_svid_from_csr(
                self.ca,
                self.entries[request.entry_id].spiffe_id,
                request.csr,
                now,
                timedelta(hours=1),
            )
            results.append(
                X509SvidResult(request.entry_id, (leaf.public_bytes(serialization.Encoding.DER),))
            )
        return results

    async def sign_jwt_svid(self, entry_id: str, audience: Sequence[str]) -> SignedJwtSvid:
        now = datetime.now(UTC)
        spiffe_id = self.entries[entry_id].spiffe_id
        token = mint_jwt_svid(self.jwt, spiffe_id, list(audience), now, timedelta(minutes=5))
        return SignedJwtSvid(spiffe_id, token, now.timestamp(), now.timestamp() + 300)


def resident_kib() -> int:
    """Current resident set size of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_agent(directory: Path, count: int) -> None:
    entries = {
        f"e{index}": Entry(
            id=f"e{index}",
            spiffe_id=SpiffeId.from_segments(TRUST_DOMAIN, "workload", str(index)),
            selectors=frozenset(
                {Selector("unix", f"uid:{os.geteuid()}" if index == 0 else f"uid:{100000 + index}")}
            ),
            created_at=index,
        )
        for index in range(count)
    }
    signer = LocalSigner(entries)
    manager = Manager(signer, TRUST_DOMAIN, max_svids=max(count, 1))
    manager.apply(EntryUpdate(bundle=signer.bundle))
    manager.start()
    before = resident_kib()
    manager.apply(EntryUpdate(upserts=tuple(entries.values()), full=True, bundle=signer.bundle))
    while manager.cached_svid_count < count:
        await asyncio.sleep(0.05)
    after = resident_kib()

    endpoint = WorkloadEndpoint(
        manager, CompositeAttestor([UnixAttestor()]), directory / "api.sock"
    )
    await endpoint.start()
    floor = grpc.aio.server()
    floor.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Floor", {"Empty": grpc.unary_unary_rpc_method_handler(_empty)}
            ),
        )
    )
    floor.add_insecure_port(f"unix:{directory / 'floor.sock'}")
    await floor.start()
    print(
        json.dumps(
            {
                "ready": True,
                "svids": manager.cached_svid_count,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        ),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await floor.stop(0)
    await endpoint.stop(0)
    await manager.stop()


async def _empty(request: object, context: object) -> bytes:
    return b""


async def run_clients(directory: Path, kind: str, connections: int, requests: int) -> None:
    # Separate subchannels, so that every client is its own connection to the agent.
    options = [("grpc.use_local_subchannel_pool", 1)]
    target = f"unix:{directory / ('floor.sock' if kind == 'floor' else 'api.sock')}"
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    latencies: list[float] = []

    async def one_client(channel: grpc.aio.Channel) -> list[float]:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        floor = channel.unary_unary(FLOOR_METHOD)
        jwt_request = workload_pb2.JWTSVIDRequest(audience=["bench"])

        async def call() -> None:
            if kind == "floor":
                await floor(b"")
            elif kind == "jwt":
                await stub.FetchJWTSVID(jwt_request, metadata=HEADER)
            else:
                stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
                await stream.read()
                stream.cancel()

        for _ in range(5):  # warm the connection and the agent's caches
            await call()
        measured = []
        for _ in range(requests):
            started = time.perf_counter()
            await call()
            measured.append(time.perf_counter() - started)
        return measured

    for result in await asyncio.gather(*(one_client(channel) for channel in channels)):
        latencies.extend(result)
    for channel in channels:
        await channel.close()
    print(json.dumps(latencies))


def main() -> None:
    command, directory, *rest = sys.argv[1:]
    if command == "agent":
        asyncio.run(run_agent(Path(directory), int(rest[0])))
    elif command == "client":
        asyncio.run(run_clients(Path(directory), rest[0], int(rest[1]), int(rest[2])))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
