"""Helpers for the agent's tests: a local CA standing in for the server, entry builders, and
a running Workload API endpoint.

`LocalCA` implements the agent's `Signer` with the SPIFFE core's builders, the same code the
server signs with, so the certificates and tokens the tests see have the server's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.agent import (
    CompositeAttestor,
    Entry,
    EntryUpdate,
    Manager,
    SignedJwtSvid,
    SigningError,
    WorkloadEndpoint,
    X509SvidRequest,
    X509SvidResult,
)
from warden.agent.attestor import UnixAttestor
from warden.agent.attestor.unix import UnixConfig
from warden.agent.ratelimit import RateLimit
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

TRUST_DOMAIN = TrustDomain("example.org")
_ids = itertools.count(1)


def make_entry(
    spiffe_id: str,
    *selectors: str,
    entry_id: str | None = None,
    created_at: int | None = None,
    x509_svid_ttl: int = 0,
    federates_with: Sequence[str] = (),
    hint: str = "",
    revision: int = 1,
) -> Entry:
    number = next(_ids)
    return Entry(
        id=entry_id or f"entry-{number}",
        spiffe_id=SpiffeId.parse(spiffe_id),
        selectors=frozenset(Selector.parse(text) for text in selectors),
        created_at=number if created_at is None else created_at,
        revision=revision,
        x509_svid_ttl=x509_svid_ttl,
        federates_with=frozenset(TrustDomain(name) for name in federates_with),
        hint=hint,
    )


@dataclass
class LocalCA:
    """A trust domain's CA and JWT key in memory, signing like the server would."""

    trust_domain: TrustDomain = TRUST_DOMAIN
    x509_svid_ttl: timedelta = timedelta(hours=1)
    jwt_svid_ttl: timedelta = timedelta(minutes=5)
    entries: dict[str, Entry] = field(default_factory=dict)
    x509_calls: int = 0
    x509_signed: int = 0
    jwt_calls: int = 0
    #: When set, every call raises SigningError with this message (a server outage).
    failing: str | None = None

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        self.ca = build_self_signed_ca(
            ec.generate_private_key(ec.SECP256R1()), self.trust_domain, now
        )
        jwt_key = ec.generate_private_key(ec.SECP256R1())
        self.jwt_signer = JwtSigner(jwt_key, key_id=f"jwt-{os.urandom(4).hex()}")
        self.bundle = Bundle(
            self.trust_domain,
            (self.ca.certificate,),
            (JwtAuthority(self.jwt_signer.key_id, self.jwt_signer.public_key()),),
            sequence_number=1,
        )

    @property
    def bundle_pem(self) -> bytes:
        return self.ca.certificate.public_bytes(serialization.Encoding.PEM)

    def register(self, *entries: Entry) -> EntryUpdate:
        for entry in entries:
            self.entries[entry.id] = entry
        return EntryUpdate(upserts=tuple(entries), bundle=self.bundle)

    async def sign_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        self.x509_calls += 1
        if self.failing:
            raise SigningError(self.failing)
        now = datetime.now(UTC)
        results = []
        for request in requests:
            entry = self.entries.get(request.entry_id)
            if entry is None:
                results.append(X509SvidResult(request.entry_id, error="entry not found"))
                continue
            ttl = (
                timedelta(seconds=entry.x509_svid_ttl)
                if entry.x509_svid_ttl
                else self.x509_svid_ttl
            )
            leaf = build_x509_svid_from_csr(self.ca, entry.spiffe_id, request.csr, now, ttl)
            chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in self.ca.chain(leaf))
            results.append(X509SvidResult(request.entry_id, chain))
            self.x509_signed += 1
        return results

    async def sign_jwt_svid(self, entry_id: str, audience: Sequence[str]) -> SignedJwtSvid:
        self.jwt_calls += 1
        if self.failing:
            raise SigningError(self.failing)
        entry = self.entries[entry_id]
        now = datetime.now(UTC)
        token = mint_jwt_svid(
            self.jwt_signer, entry.spiffe_id, list(audience), now, self.jwt_svid_ttl
        )
        return SignedJwtSvid(
            entry.spiffe_id, token, now.timestamp(), (now + self.jwt_svid_ttl).timestamp()
        )


def public_socket_dir() -> Path:
    """A directory under /tmp that every user may traverse, for sockets other uids use.

    pytest's tmp_path sits under a mode 0700 directory, which a process that dropped its
    privileges cannot enter.
    """
    directory = Path(tempfile.mkdtemp(prefix="warden-test-", dir="/tmp"))
    directory.chmod(0o755)
    return directory


@dataclass
class RunningAgent:
    ca: LocalCA
    manager: Manager
    endpoint: WorkloadEndpoint
    socket_path: Path

    def register(self, *entries: Entry) -> None:
        update = self.ca.register(*entries)
        bundle = update.bundle if self.manager.bundle is not None else None
        self.manager.apply(EntryUpdate(upserts=update.upserts, bundle=bundle))

    def delete(self, *entries: Entry) -> None:
        for entry in entries:
            self.ca.entries.pop(entry.id, None)
        self.manager.apply(EntryUpdate(deleted_ids=tuple(entry.id for entry in entries)))

    async def wait_for_svids(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.manager.cached_svid_count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.manager.cached_svid_count} SVIDs cached, expected {count}"
                )
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_agent(
    socket_dir: Path,
    ca: LocalCA | None = None,
    *,
    discover_workload_path: bool = False,
    rate_limit: RateLimit | None = None,
    svid_wait: float = 5.0,
    with_bundle: bool = True,
    attestors: list[object] | None = None,
) -> AsyncIterator[RunningAgent]:
    """Start a manager and a Workload API endpoint at `socket_dir/api.sock`.

    Without `with_bundle` the agent is as before its first sync: it holds no trust bundle.
    """
    ca = ca or LocalCA()
    manager = Manager(ca, ca.trust_domain)
    if with_bundle:
        manager.apply(EntryUpdate(bundle=ca.bundle))
    manager.start()
    attestor = CompositeAttestor(
        attestors  # type: ignore[arg-type]
        or [UnixAttestor(UnixConfig(discover_workload_path=discover_workload_path))]
    )
    socket_path = socket_dir / "api.sock"
    endpoint = WorkloadEndpoint(
        manager, attestor, socket_path, rate_limit=rate_limit, svid_wait=svid_wait
    )
    await endpoint.start()
    try:
        yield RunningAgent(ca, manager, endpoint, socket_path)
    finally:
        await endpoint.stop(grace=0.1)
        await manager.stop()
        await attestor.close()


# A connection made by another process, used here: SO_PEERCRED names the process that
# called connect(), so a child connects a socket the test created and the test speaks gRPC
# over it through a local relay.

_CHILD = r"""
import os, socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
if sys.argv[3]:
    uid = int(sys.argv[3])
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
sock.connect(sys.argv[2])
sys.stdout.write("connected\n")
sys.stdout.flush()
command = sys.stdin.readline().strip()
if command:
    os.execv(command, [command, "60"])
sys.stdin.readline()
"""


@dataclass
class ForeignConnection:
    """A Workload API connection whose peer credentials are a child process's."""

    process: asyncio.subprocess.Process
    target: str
    _server: asyncio.AbstractServer
    _socket: object

    async def exec(self, program: str) -> None:
        """Make the child replace itself with `program` (given the argument 60)."""
        assert self.process.stdin is not None
        self.process.stdin.write(program.encode() + b"\n")
        await self.process.stdin.drain()
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{self.process.pid}/exe") != os.path.realpath(program):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the child did not execute {program}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


async def connect_from_child(
    socket_path: Path, relay_dir: Path, *, uid: int | None = None
) -> ForeignConnection:
    """Have a child process connect to `socket_path` (as `uid` when given) for this test.

    Returns a gRPC target (`unix:<relay>`) whose single connection is the child's.
    """
    import socket as socket_module
    import sys

    handed = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(handed.fileno()),
        str(socket_path),
        "" if uid is None else str(uid),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        pass_fds=(handed.fileno(),),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 10)
    if line != b"connected\n":
        raise RuntimeError(f"the child could not connect: {line!r}")

    used = False
    relay_path = relay_dir / f"relay-{process.pid}.sock"

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal used
        if used:  # the agent must see one connection only: the child's
            writer.close()
            return
        used = True
        handed.setblocking(False)
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(sock=handed)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    server = await asyncio.start_unix_server(relay, path=str(relay_path))
    return ForeignConnection(process, f"unix:{relay_path}", server, handed)
