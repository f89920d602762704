"""Attacks on the agent, the Workload API and warden.mtls, the workload half of the identity
plane.

Each test starts its own agent, Workload API socket, helper or TLS peers, with sockets in
fresh directories and data under tmp_path. It then attacks one surface: the socket and its
directory, the callers' identity (another uid, a changed process, a forged cgroup), the
attestors' caches, the agent's state files and loops, the stream protocol, the helper, or
the logs.

Each test marked `xfail(strict=True)` reproduces a problem the product still has, and its
reason names the problem. The others are attacks the product withstands, kept as regression
tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mtls"))

from agent_fakes import FakeDockerEngine, FakeKubelet, docker_inspect, proc_tree
from agent_support import (
    LocalCA,
    connect_from_child,
    make_entry,
    public_socket_dir,
    running_agent,
)
from mtls_support import StaticSource, issue

from warden.agent import (
    Entry,
    EntryUpdate,
    Manager,
    X509Snapshot,
    X509Svid,
    X509SvidRequest,
    X509SvidResult,
)
from warden.agent.attestor import AttestationError
from warden.agent.attestor import unix as unix_attestor
from warden.agent.attestor.docker import DockerAttestor, DockerConfig
from warden.agent.attestor.k8s import K8sAttestor, K8sConfig
from warden.agent.attestor.unix import UnixAttestor, UnixConfig
from warden.agent.caller import Executable, capture_caller
from warden.agent.nodeattest import JoinTokenAttestor, X509PopAttestor
from warden.agent.proc import ProcFS
from warden.agent.runtime import Agent, AgentOptions
from warden.agent.state import KEY_IDS, STATE_FILE, AgentIdentity, StateStore, new_key
from warden.api import workload_pb2, workload_pb2_grpc
from warden.api.server.v1 import types_pb2
from warden.logs import JsonFormatter
from warden.mtls import (
    PeerRejectedError,
    WorkloadApiClient,
    X509Context,
    authorize_any,
    authorize_member_of,
    check_peer,
    handshake,
    server_context,
    ssl_server_context,
)
from warden.mtls.tls import MtlsContext
from warden.pki.keys import DiskKeyManager
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.server.metrics import Metrics
from warden.server.options import ServerOptions
from warden.spiffe import Bundle, SpiffeId, TrustDomain, build_x509_svid, mint_jwt_svid

HEADER = (("workload.spiffe.io", "true"),)
UID = os.geteuid()
NOBODY = 65534
VICTIM_ID = "9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b"
OTHER_ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
FAKE_PID = 4242
needs_root = pytest.mark.skipif(UID != 0, reason="acting as another uid needs root")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = public_socket_dir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def first_x509(
    stub: workload_pb2_grpc.SpiffeWorkloadAPIStub,
) -> workload_pb2.X509SVIDResponse:
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
    try:
        return await asyncio.wait_for(call.read(), 10)
    finally:
        call.cancel()


def this_process(*, open_executable: bool = False):  # type: ignore[no-untyped-def]
    return capture_caller(
        os.getpid(), os.geteuid(), os.getegid(), ProcFS(), open_executable=open_executable
    )


# The Workload API socket and its directory.


@needs_root
@pytest.mark.parametrize(
    ("owner", "mode", "message"),
    [
        (NOBODY, 0o755, "belongs to uid 65534"),
        (0, 0o777, "writable by other users"),
        (0, 0o775, "writable by other users"),
    ],
)
async def test_socket_directory_others_control_rejected(
    tmp_path: Path, owner: int, mode: int, message: str
) -> None:
    # Whoever controls the socket's directory can rename a socket of their own over the
    # agent's, and then hand every workload a trust bundle and SVIDs of their choosing.
    directory = tmp_path / "public"
    directory.mkdir()
    os.chown(directory, owner, owner)
    directory.chmod(mode)

    with pytest.raises(OSError, match=message):
        async with running_agent(directory):
            pass

    assert not (directory / "api.sock").exists()


@needs_root
async def test_socket_under_directory_others_control_rejected(tmp_path: Path) -> None:
    # An attacker who owns a parent directory can rename the agent's directory away and put
    # one of their own in its place.
    squatted = tmp_path / "spire-agent"
    squatted.mkdir()
    os.chown(squatted, NOBODY, NOBODY)
    directory = squatted / "public"

    with pytest.raises(OSError, match="belongs to uid 65534"):
        async with running_agent(directory):
            pass

    assert not directory.exists()


async def test_socket_in_sticky_shared_directory_accepted(tmp_path: Path) -> None:
    # /tmp-like directories are writable by everyone, but the sticky bit keeps others from
    # renaming or removing the agent's socket.
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o1777)

    async with running_agent(directory) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            response = await first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel))

    assert [svid.spiffe_id for svid in response.svids] == ["spiffe://example.org/web"]


# Container attestation from /proc/<pid>/cgroup.


def docker_attestor(proc_root: Path, docker_socket: Path) -> DockerAttestor:
    return DockerAttestor(
        DockerConfig(docker_socket_path=f"unix://{docker_socket}", proc_root=str(proc_root))
    )


def recorded_caller():  # type: ignore[no-untyped-def]
    caller = this_process()
    caller.pid = FAKE_PID
    return caller


async def test_conflicting_container_ids_fail_attestation(tmp_path: Path) -> None:
    # A process that can create a cgroup in one cgroup v1 hierarchy (a writable name=systemd
    # mount) names it after another container. SPIRE refuses such a process; taking the
    # first line that names a container would give it the other container's selectors.
    cgroup = (
        f"12:name=systemd:/docker/{OTHER_ID}/{VICTIM_ID}\n"
        f"11:memory:/docker/{OTHER_ID}\n"
        f"1:cpu,cpuacct:/docker/{OTHER_ID}\n"
    )
    with (
        proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as proc_root,
        FakeDockerEngine(tmp_path / "docker.sock") as docker,
    ):
        docker.containers[VICTIM_ID] = docker_inspect(VICTIM_ID, "victim:1", {"app": "victim"}, [])
        docker.containers[OTHER_ID] = docker_inspect(OTHER_ID, "other:1", {"app": "other"}, [])
        attestor = docker_attestor(proc_root, tmp_path / "docker.sock")
        try:
            with pytest.raises(AttestationError, match="container"):
                await attestor.attest(recorded_caller())
        finally:
            await attestor.close()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "the container locator trusts cgroup names: any user with a delegated systemd "
        "subtree (systemd-run --user --scope --unit docker-<id>) can name a cgroup after "
        "another container and receive its docker selectors; telling runtime-made cgroups "
        "from user-made ones needs a design decision (cgroup directory owner, or checking "
        "the caller against the container's own processes)"
    ),
)
async def test_user_cgroup_named_after_container_not_attested(tmp_path: Path) -> None:
    cgroup = (
        f"0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{VICTIM_ID}.scope\n"
    )
    with (
        proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as proc_root,
        FakeDockerEngine(tmp_path / "docker.sock") as docker,
    ):
        docker.containers[VICTIM_ID] = docker_inspect(VICTIM_ID, "victim:1", {"app": "victim"}, [])
        attestor = docker_attestor(proc_root, tmp_path / "docker.sock")
        try:
            selectors = await attestor.attest(recorded_caller())
        except AttestationError:
            selectors = []
        finally:
            await attestor.close()

    assert "label:app:victim" not in {selector.value for selector in selectors}


async def test_unlisted_pods_share_kubelet_requests(tmp_path: Path) -> None:
    # A process whose cgroup names a pod the kubelet does not list is polled for, which is
    # right for a container that has just started. Many such callers at once must share
    # the kubelet's responses. One fresh pod list per poll each would let a single user
    # flood the kubelet and queue every other workload's attestation behind those requests.
    cgroup = (
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"0d3b2a7e_5c41_4f8e_9a6b_1c2d3e4f5a6b.slice/cri-containerd-{OTHER_ID}.scope\n"
    )
    attempts = 5
    callers = 20
    with proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as proc_root, FakeKubelet() as kubelet:
        attestor = K8sAttestor(
            K8sConfig(
                kubelet_read_only_port=kubelet.port,
                max_poll_attempts=attempts,
                poll_retry_interval="50ms",
                proc_root=str(proc_root),
            )
        )
        try:
            results = await asyncio.gather(
                *(attestor.attest(recorded_caller()) for _ in range(callers)),
                return_exceptions=True,
            )
        finally:
            await attestor.close()

    assert all(isinstance(result, AttestationError) for result in results)
    assert len(kubelet.requests) <= 2 * attempts


# The unix attestor's binary digests.


async def test_digest_cache_follows_rewritten_binary(tmp_path: Path) -> None:
    # The owner of a binary can rewrite it in place with other bytes of the same size and
    # put its modification time back (utime), which the owner may always do. The digest
    # must describe the bytes, not a cached earlier content.
    binary = tmp_path / "tool"
    binary.write_bytes(b"A" * 8192)
    original = binary.stat()
    attestor = UnixAttestor(UnixConfig(discover_workload_path=True))

    async def sha256_selector() -> set[str]:
        descriptor = os.open(binary, os.O_RDONLY)
        try:
            status = os.fstat(descriptor)
            caller = this_process()
            caller.executable = Executable(str(binary), descriptor, status.st_dev, status.st_ino)
            selectors = await attestor.attest(caller)
        finally:
            os.close(descriptor)
        return {s.value for s in selectors if s.value.startswith("sha256:")}

    before = await sha256_selector()
    with binary.open("r+b") as handle:
        handle.write(b"B" * 8192)
    os.utime(binary, ns=(original.st_atime_ns, original.st_mtime_ns))
    after = await sha256_selector()

    assert binary.stat().st_ino == original.st_ino
    assert before == {f"sha256:{hashlib.sha256(b'A' * 8192).hexdigest()}"}
    assert after == {f"sha256:{hashlib.sha256(b'B' * 8192).hexdigest()}"}


async def test_slow_hashing_does_not_stall_signing(
    socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With discover_workload_path, every call hashes the caller's binary, without a size
    # limit by default. A local user who runs a huge binary (a sparse file of many
    # gigabytes is still a valid ELF) makes each hash take minutes. The agent must keep
    # signing and rotating SVIDs for everyone else meanwhile.
    release = threading.Event()

    def slow_hash(descriptor: int) -> str:
        release.wait(30)
        return "0" * 64

    monkeypatch.setattr(unix_attestor, "_hash_descriptor", slow_hash)
    async with (
        running_agent(socket_dir, discover_workload_path=True) as agent,
        grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel,
    ):
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        # More calls than asyncio's default executor has threads on any machine.
        calls = [
            asyncio.ensure_future(
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["db"]), metadata=HEADER)
            )
            for _ in range(40)
        ]
        try:
            await asyncio.sleep(0.5)
            agent.register(make_entry("spiffe://example.org/other", "unix:uid:4321"))
            await agent.wait_for_svids(1, timeout=5)
        finally:
            release.set()
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)


async def test_hash_reads_binary_of_disconnected_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hash waiting for a thread reads the caller's descriptor later. If the caller
    # disconnects meanwhile, its descriptor is closed and its number goes to the next file
    # the agent opens, such as another caller's binary. The digest cached for the first
    # binary must still be the first binary's.
    first = tmp_path / "first"
    first.write_bytes(b"first binary " * 100)
    second = tmp_path / "second"
    second.write_bytes(b"second binary " * 100)
    started = threading.Event()
    release = threading.Event()
    hash_descriptor = unix_attestor._hash_descriptor

    def delayed_hash(descriptor: int) -> str:
        started.set()
        release.wait(10)
        return hash_descriptor(descriptor)

    monkeypatch.setattr(unix_attestor, "_hash_descriptor", delayed_hash)
    attestor = UnixAttestor(UnixConfig(discover_workload_path=True))
    caller = this_process()
    descriptor = os.open(first, os.O_RDONLY)
    status = os.fstat(descriptor)
    caller.executable = Executable(str(first), descriptor, status.st_dev, status.st_ino)
    attestation = asyncio.create_task(attestor.attest(caller))
    try:
        assert await asyncio.to_thread(started.wait, 5)
        caller.close()
        reused = os.open(second, os.O_RDONLY)
        try:
            release.set()
            selectors = await attestation
        finally:
            os.close(reused)
    finally:
        release.set()
        await attestor.close()

    assert reused == descriptor
    digests = {s.value for s in selectors if s.value.startswith("sha256:")}
    assert digests == {f"sha256:{hashlib.sha256(first.read_bytes()).hexdigest()}"}


# The stream protocol.


def test_rotated_svid_changes_stream_fingerprint() -> None:
    # A stream resends only when the snapshot's fingerprint changes. Python reuses the
    # address of a freed object at once, so a fingerprint built from id() can match an
    # SVID that replaced the one last sent, and the stream then withholds the rotation.
    entry = make_entry("spiffe://example.org/web", f"unix:uid:{UID}")

    def svid(leaf: bytes) -> X509Svid:
        return X509Svid(entry.id, entry.spiffe_id, (leaf,), b"key", 0.0, 3600.0)

    sent_svid = svid(b"first leaf")
    sent = X509Snapshot((entry,), ((entry, sent_svid),), None, ()).fingerprint
    address = id(sent_svid)
    del sent_svid
    candidates = []
    for number in range(1000):
        candidates.append(svid(b"rotated leaf %d" % number))
        if id(candidates[-1]) == address:
            break
    rotated = candidates[-1]

    assert X509Snapshot((entry,), ((entry, rotated),), None, ()).fingerprint != sent


async def test_unsignable_entry_does_not_delay_withdrawal(socket_dir: Path) -> None:
    # The workload also matches an entry the server refuses to sign. Deleting another of its
    # entries must still reach its stream within a second, not after the agent gave up
    # waiting for the refused entry's SVID.
    web = make_entry("spiffe://example.org/web", f"unix:uid:{UID}", created_at=1)
    api = make_entry("spiffe://example.org/api", f"unix:uid:{UID}", created_at=2)
    refused = make_entry("spiffe://example.org/refused", f"unix:uid:{UID}", created_at=3)
    async with (
        running_agent(socket_dir, svid_wait=4.0) as agent,
        grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel,
    ):
        agent.register(web, api)
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
        try:
            first = await asyncio.wait_for(call.read(), 10)
            # Known to the agent, unknown to the CA: every signing request for it fails.
            agent.manager.apply(EntryUpdate(upserts=(refused,)))
            await asyncio.sleep(0.2)
            agent.delete(web)
            started = time.monotonic()
            withdrawn = await asyncio.wait_for(call.read(), 10)
            elapsed = time.monotonic() - started
        finally:
            call.cancel()

    assert [svid.spiffe_id for svid in first.svids] == [str(web.spiffe_id), str(api.spiffe_id)]
    assert [svid.spiffe_id for svid in withdrawn.svids] == [str(api.spiffe_id)]
    assert elapsed < 1.0


SETPRIV_SCRIPT = f"""#!/bin/sh
exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sleep "$1"
"""


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
async def test_stream_ends_when_caller_drops_privileges(socket_dir: Path) -> None:
    # A daemon that starts as root, opens its stream and then drops to an unprivileged uid
    # must not keep receiving root's rotated SVIDs on that stream.
    script = socket_dir / "drop-privileges"
    script.write_text(SETPRIV_SCRIPT)
    script.chmod(0o755)
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/root-only", "unix:uid:0"))
        foreign = await connect_from_child(agent.socket_path, socket_dir)
        try:
            async with grpc.aio.insecure_channel(foreign.target) as channel:
                stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
                first = await asyncio.wait_for(call.read(), 10)

                assert foreign.process.stdin is not None
                foreign.process.stdin.write(f"{script}\n".encode())
                await foreign.process.stdin.drain()
                await wait_for_uid(foreign.process.pid, NOBODY)
                agent.register(make_entry("spiffe://example.org/root-too", "unix:uid:0"))
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(call.read(), 10)
                call.cancel()
        finally:
            await foreign.close()

    assert [svid.spiffe_id for svid in first.svids] == ["spiffe://example.org/root-only"]
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


async def wait_for_uid(pid: int, uid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if uids.split()[2] == str(uid):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not switch to uid {uid}")
        await asyncio.sleep(0.02)


# The agent's state in data_dir.


def agent_identity(ca: LocalCA, keys: DiskKeyManager, key_id: str) -> AgentIdentity:
    key = new_key(keys, key_id)
    agent_id = SpiffeId.parse("spiffe://example.org/spire/agent/join_token/used-token")
    leaf = build_x509_svid(ca.ca, agent_id, key.public_key(), datetime.now(UTC), timedelta(hours=1))
    return AgentIdentity(tuple(ca.ca.chain(leaf)), key, key_id, ca.bundle, False, "join_token")


def test_state_survives_crash_between_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renewal writes the new SVID, then the bundle, then the key id. An agent killed
    # between the SVID and the key id must still start from its files: a join token works
    # once, so an agent that has to attest again needs an operator.
    from warden.agent import state as state_module

    ca = LocalCA()
    keys = DiskKeyManager(tmp_path / "keys")
    store = StateStore(tmp_path, keys, ca.trust_domain)
    store.save(agent_identity(ca, keys, KEY_IDS[0]))
    renewed = agent_identity(ca, keys, KEY_IDS[1])

    write = state_module.write_atomically

    def killed_before_state_file(path: Path, data: bytes, mode: int) -> None:
        if path.name == STATE_FILE:
            raise OSError("the agent was killed here")
        write(path, data, mode)

    monkeypatch.setattr(state_module, "write_atomically", killed_before_state_file)
    with pytest.raises(OSError, match="killed"):
        store.save(renewed)
    monkeypatch.undo()

    loaded = StateStore(tmp_path, DiskKeyManager(tmp_path / "keys"), ca.trust_domain).load()

    assert loaded is not None
    assert loaded.chain[0].serial_number == renewed.chain[0].serial_number
    assert loaded.key_id == KEY_IDS[1]


class MalformedLeafCA(LocalCA):
    """A CA whose leaf for one entry carries a duplicated extension, as a buggy server's might."""

    broken_entry: str = ""

    async def sign_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        results = await super().sign_x509_svids(requests)
        key_usage = bytes.fromhex("0603551d0f")
        extended_key_usage = bytes.fromhex("0603551d25")
        return [
            X509SvidResult(
                result.entry_id,
                (result.chain[0].replace(extended_key_usage, key_usage), *result.chain[1:]),
            )
            if result.entry_id == self.broken_entry
            else result
            for result in results
        ]


async def test_malformed_certificate_does_not_stop_rotation() -> None:
    # One certificate the agent cannot read must fail its own entry only: the task that
    # signs and rotates every SVID of the node has to keep running.
    ca = MalformedLeafCA()
    broken = make_entry("spiffe://example.org/broken", "unix:uid:1001")
    healthy = make_entry("spiffe://example.org/healthy", "unix:uid:1002")
    ca.broken_entry = broken.id
    manager = Manager(ca, ca.trust_domain)
    manager.apply(ca.register(broken, healthy))
    manager.start()
    try:
        deadline = time.monotonic() + 5
        while manager.cached_svid(healthy.id) is None:
            assert time.monotonic() < deadline, "the healthy entry's SVID was never cached"
            await asyncio.sleep(0.02)

        ca.broken_entry = ""
        manager.wake()
        deadline = time.monotonic() + 5
        while manager.cached_svid(broken.id) is None:
            assert time.monotonic() < deadline, "the broken entry was not signed again"
            await asyncio.sleep(0.02)
    finally:
        await manager.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class JoinedAgent:
    """An agent joined to a real server, both in this event loop."""

    agent: Agent
    run: asyncio.Task[int]
    admin_socket: Path
    data_dir: Path

    async def create_entry(self, spiffe_id: str, *selectors: str) -> None:
        assert self.agent.identity is not None
        entry = types_pb2.Entry(
            spiffe_id=spiffe_id,
            parent_id=str(self.agent.identity.spiffe_id),
            selectors=[
                types_pb2.Selector(type=text.split(":", 1)[0], value=text.split(":", 1)[1])
                for text in selectors
            ],
            owner="team-web",
        )
        with AdminClient(str(self.admin_socket)) as admin:
            response = await asyncio.to_thread(admin.create_entries, [entry])
        assert response.results[0].status.code == 0, response.results[0].status.message


@contextlib.asynccontextmanager
async def joined_agent(
    tmp_path: Path, socket_dir: Path, agent_ttl: timedelta = timedelta(hours=1)
) -> AsyncIterator[JoinedAgent]:
    """Start a server (SQLite under tmp_path) and an agent joined to it with a join token."""
    options = ServerOptions(
        trust_domain=TrustDomain("example.org"),
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={"join_token": {}},
        ratelimit_attestation=False,
        event_poll_interval=0.05,
        agent_ttl=agent_ttl,
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    agent: Agent | None = None
    run: asyncio.Task[int] | None = None
    try:
        with AdminClient(str(options.socket_path)) as admin:
            token = await asyncio.to_thread(admin.create_join_token, 600, "platform-team")
            bundle = await asyncio.to_thread(admin.get_bundle)
        data_dir = tmp_path / "agent"
        agent = Agent(
            AgentOptions(
                trust_domain=options.trust_domain,
                server_host="127.0.0.1",
                server_port=options.bind_port,
                socket_path=socket_dir / "agent.sock",
                data_dir=data_dir,
                node_attestor=JoinTokenAttestor(token.value),
                key_manager=DiskKeyManager(data_dir / "keys"),
                workload_attestors=[UnixAttestor()],
                bootstrap_bundle=Bundle.from_jwks_json(options.trust_domain, bundle.spiffe_json),
                retry_max=1.0,
            )
        )
        run = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.synced.wait(), 20)
        yield JoinedAgent(agent, run, options.socket_path, data_dir)
    finally:
        if agent is not None and run is not None:
            agent.stop("test finished")
            await asyncio.wait_for(run, 20)
        await server.stop()


def x509pop_files(directory: Path) -> X509PopAttestor:
    """A node CA, a node certificate and key for x509pop; return the agent's attestor."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    node_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = signed_leaf_of(ca_key, ca_key, None, ca=True)
    node_certificate = signed_leaf_of(ca_key, node_key, ca_certificate, ca=False)
    (directory / "node-ca.pem").write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "node.pem").write_bytes(node_certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "node.key").write_bytes(
        node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return X509PopAttestor(directory / "node.pem", directory / "node.key", None)


def signed_leaf_of(
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    *,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node CA" if ca else "node-7")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True
        )
        .sign(issuer_key, hashes.SHA256())
    )


async def test_outage_longer_than_agent_svid_recovers(tmp_path: Path, socket_dir: Path) -> None:
    # The server is down for longer than the agent SVID lives. Once it is back, an agent
    # whose node attestor can attest again (x509pop) must do so by itself. An expired
    # client certificate fails the TLS handshake, so it must not present that one.
    attestor = x509pop_files(tmp_path)
    options = ServerOptions(
        trust_domain=TrustDomain("example.org"),
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={"x509pop": {"ca_bundle_path": str(tmp_path / "node-ca.pem")}},
        ratelimit_attestation=False,
        event_poll_interval=0.05,
        agent_ttl=timedelta(seconds=3),
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    with AdminClient(str(options.socket_path)) as admin:
        bundle = await asyncio.to_thread(admin.get_bundle)
    agent = Agent(
        AgentOptions(
            trust_domain=options.trust_domain,
            server_host="127.0.0.1",
            server_port=options.bind_port,
            socket_path=socket_dir / "agent.sock",
            data_dir=tmp_path / "agent",
            node_attestor=attestor,
            key_manager=DiskKeyManager(tmp_path / "agent" / "keys"),
            workload_attestors=[UnixAttestor()],
            bootstrap_bundle=Bundle.from_jwks_json(options.trust_domain, bundle.spiffe_json),
            retry_max=1.0,
        )
    )
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.synced.wait(), 20)
        assert agent.identity is not None
        first = agent.identity
        await server.stop()
        while not first.expired():
            await asyncio.sleep(0.1)
        server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
        await server.start()

        deadline = time.monotonic() + 10
        while agent.identity.chain[0].serial_number == first.chain[0].serial_number:
            assert not run.done(), f"the agent stopped: {agent.stop_reason}"
            assert time.monotonic() < deadline, "the agent did not attest again"
            await asyncio.sleep(0.1)
        assert not agent.identity.expired()
        assert agent.identity.spiffe_id == first.spiffe_id
    finally:
        agent.stop("test finished")
        await asyncio.wait_for(run, 20)
        await server.stop()


@needs_root
async def test_unsafe_socket_directory_stops_agent_before_attesting(
    tmp_path: Path, socket_dir: Path
) -> None:
    # The agent must say what is wrong with its socket path and exit 1, and do so before it
    # attests: a join token works once, and one spent on a doomed start is lost.
    squatted = tmp_path / "squatted"
    squatted.mkdir()
    os.chown(squatted, NOBODY, NOBODY)
    async with joined_agent(tmp_path, socket_dir) as joined:
        with AdminClient(str(joined.admin_socket)) as admin:
            token = await asyncio.to_thread(admin.create_join_token, 600, "platform-team")
        options = replace(
            joined.agent.options,
            socket_path=squatted / "agent.sock",
            data_dir=tmp_path / "second",
            node_attestor=JoinTokenAttestor(token.value),
            key_manager=DiskKeyManager(tmp_path / "second" / "keys"),
        )
        failed = Agent(options)
        code = await asyncio.wait_for(failed.run(), 20)

        retried = Agent(replace(options, socket_path=socket_dir / "second.sock"))
        run = asyncio.create_task(retried.run())
        try:
            await asyncio.wait_for(retried.synced.wait(), 20)
        finally:
            retried.stop("test finished")
            await asyncio.wait_for(run, 20)

    assert code == 1
    assert "belongs to uid 65534" in (failed.stop_reason or "")


async def test_renewal_retries_after_failed_state_write(tmp_path: Path, socket_dir: Path) -> None:
    # A renewed agent SVID that cannot be stored (full disk, read-only file system) must be
    # requested again once the disk recovers, before the current SVID expires.
    async with joined_agent(tmp_path, socket_dir, agent_ttl=timedelta(seconds=6)) as joined:
        agent = joined.agent
        assert agent.identity is not None
        first = agent.identity
        svid_file = joined.data_dir / "agent_svid.pem"
        svid_file.unlink()
        svid_file.mkdir()  # os.replace() cannot put the renewed SVID file over a directory

        while datetime.now(UTC) < first.renew_at() + timedelta(seconds=1):
            await asyncio.sleep(0.05)
        svid_file.rmdir()
        while agent.identity.chain[0].serial_number == first.chain[0].serial_number:
            assert not joined.run.done(), f"the agent stopped: {agent.stop_reason}"
            assert not first.expired(), "the agent SVID expired without being renewed"
            await asyncio.sleep(0.05)


async def test_sync_survives_update_it_cannot_apply(
    tmp_path: Path, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An entry the agent cannot decode (a server of a newer version, a bad row in a shared
    # database) must not end entry sync for good: later entries still have to arrive.
    from warden.agent import serverapi

    decode = serverapi.entry_from_message
    failures = []

    def fails_once(message: types_pb2.Entry) -> Entry:
        if message.spiffe_id.endswith("/undecodable") and not failures:
            failures.append(message.id)
            raise ValueError(f"cannot decode entry {message.id}")
        return decode(message)

    monkeypatch.setattr(serverapi, "entry_from_message", fails_once)
    async with joined_agent(tmp_path, socket_dir) as joined:
        await joined.create_entry("spiffe://example.org/undecodable", f"unix:uid:{UID}")
        deadline = time.monotonic() + 5
        while not failures:
            assert time.monotonic() < deadline, "the agent never received the entry"
            await asyncio.sleep(0.05)
        await joined.create_entry("spiffe://example.org/later", f"unix:uid:{UID}")

        deadline = time.monotonic() + 10
        held: set[str] = set()
        while held != {"spiffe://example.org/undecodable", "spiffe://example.org/later"}:
            assert time.monotonic() < deadline, f"entry sync stopped; the agent holds {held}"
            await asyncio.sleep(0.05)
            held = {str(entry.spiffe_id) for entry in joined.agent.manager.entries.all()}


# The helper.


async def test_helper_exits_when_cmd_cannot_start(socket_dir: Path, tmp_path: Path) -> None:
    # A typo in cmd must end the helper with an error, not leave it running with a dead
    # stream that never writes rotated files again.
    config = tmp_path / "helper.conf"
    config.write_text(
        f'agent_address = "{socket_dir / "api.sock"}"\n'
        'cmd = "/nonexistent/warden-test-server"\n'
        f'cert_dir = "{tmp_path}"\n'
        'svid_file_name = "svid.pem"\n'
        'svid_key_file_name = "svid_key.pem"\n'
        'svid_bundle_file_name = "bundle.pem"\n'
    )
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "warden",
            "helper",
            "-config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert process.returncode != 0
    assert b"/nonexistent/warden-test-server" in stderr


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
async def test_helper_signals_only_pid_file_owners_processes(
    socket_dir: Path, tmp_path: Path
) -> None:
    # A helper running as root signals the process in pid_file_name after each update. If
    # an unprivileged user owns that file (postgres owns postmaster.pid), they could write
    # any pid into it and have root send renew_signal there: SIGUSR1 ends most processes.
    victim = await asyncio.create_subprocess_exec("sleep", "60")
    own = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sleep", "60"
    )
    pid_files = tmp_path / "run"
    pid_files.mkdir()
    hostile = pid_files / "hostile.pid"
    hostile.write_text(f"{victim.pid}\n")
    legitimate = pid_files / "legitimate.pid"
    legitimate.write_text(f"{own.pid}\n")
    for path in (hostile, legitimate):
        os.chown(path, NOBODY, NOBODY)
    helpers = []
    try:
        async with running_agent(socket_dir) as agent:
            agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
            for name, pid_file in (("hostile", hostile), ("legitimate", legitimate)):
                config = tmp_path / f"{name}.conf"
                (tmp_path / name).mkdir()
                config.write_text(
                    f'agent_address = "{agent.socket_path}"\n'
                    f'cert_dir = "{tmp_path / name}"\n'
                    'svid_file_name = "svid.pem"\n'
                    'svid_key_file_name = "svid_key.pem"\n'
                    'svid_bundle_file_name = "bundle.pem"\n'
                    f'pid_file_name = "{pid_file}"\n'
                    'renew_signal = "SIGUSR1"\n'
                )
                helpers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "warden",
                        "helper",
                        "-config",
                        str(config),
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )
            await wait_until(lambda: own.returncode is not None or bool(has_exited(own.pid)))
            await asyncio.sleep(0.5)
            victim_alive = victim.returncode is None and not has_exited(victim.pid)
    finally:
        for process in (*helpers, victim, own):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    assert victim_alive, (
        "the helper sent renew_signal to a process the PID file's owner does not own"
    )
    assert own.returncode == -signal.SIGUSR1


def has_exited(pid: int) -> bool:
    """Tell whether `pid` has exited (a zombie counts), without reaping it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_watch_survives_failing_subscriber(socket_dir: Path) -> None:
    # A callback that raises once (a full disk in the helper, a bug in an application) must
    # not end the thread that follows the stream: later rotations still have to arrive.
    updates: list[list[str]] = []

    def on_update(context: X509Context) -> None:
        updates.append([str(svid.spiffe_id) for svid in context.svids])
        if len(updates) == 1:
            raise RuntimeError("the subscriber failed")

    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", created_at=1))
        client = WorkloadApiClient(f"unix://{agent.socket_path}")
        watch = client.watch_x509_context(on_update)
        try:
            deadline = time.monotonic() + 10
            while not updates:
                assert time.monotonic() < deadline, "no first update"
                await asyncio.sleep(0.02)
            agent.register(make_entry("spiffe://example.org/api", f"unix:uid:{UID}", created_at=2))
            while len(updates) < 2:
                assert time.monotonic() < deadline, "the watch stopped after the failure"
                await asyncio.sleep(0.02)
        finally:
            watch.cancel()
            client.close()

    assert updates[1] == ["spiffe://example.org/web", "spiffe://example.org/api"]


# Attacks the Workload API withstands.


@pytest.mark.parametrize("value", ["True", "TRUE", "1", "yes", "true ", ""])
async def test_header_must_be_exactly_true(socket_dir: Path, value: str) -> None:
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.FetchJWTSVID(
                    workload_pb2.JWTSVIDRequest(audience=["db"]),
                    metadata=(("workload.spiffe.io", value),),
                )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_garbage_bytes_leave_agent_serving(socket_dir: Path) -> None:
    # Bytes that are not HTTP/2, an HTTP/1.1 request, a connection closed mid-preface and
    # one reset at once: none may stop the agent or leave a relayed connection behind.
    payloads = [
        os.urandom(4096),
        b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"",
    ]
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        for payload in payloads:
            reader, writer = await asyncio.open_unix_connection(str(agent.socket_path))
            writer.write(payload)
            await writer.drain()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(reader.read(65536), 1)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            response = await first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel))
        await wait_until(lambda: agent.endpoint.connection_count == 0)
        registered = len(agent.endpoint.callers)

    assert [svid.spiffe_id for svid in response.svids] == ["spiffe://example.org/web"]
    assert registered == 0


async def test_idle_connections_released_on_close(socket_dir: Path) -> None:
    # Each idle connection costs the agent a relayed connection and a process snapshot.
    # All of it must be released when they close, and other callers still get served.
    async with running_agent(socket_dir, discover_workload_path=True) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        descriptors_before = len(os.listdir("/proc/self/fd"))
        idle = []
        for _ in range(300):
            idle.append(await asyncio.open_unix_connection(str(agent.socket_path)))
        await wait_until(lambda: agent.endpoint.connection_count == 300)

        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            response = await first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel))
        for _, writer in idle:
            writer.close()
        await wait_until(lambda: agent.endpoint.connection_count == 0)
        registered = len(agent.endpoint.callers)
        await wait_until(lambda: len(os.listdir("/proc/self/fd")) <= descriptors_before + 5)

    assert [svid.spiffe_id for svid in response.svids] == ["spiffe://example.org/web"]
    assert registered == 0


async def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_caller_gone_before_call_unavailable(socket_dir: Path) -> None:
    # A process that connects and exits leaves a connection another process could use; the
    # agent must not attest whatever now runs under that pid.
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        foreign = await connect_from_child(agent.socket_path, socket_dir)
        try:
            foreign.process.kill()
            await foreign.process.wait()
            async with grpc.aio.insecure_channel(foreign.target) as channel:
                stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await first_x509(stub)
        finally:
            await foreign.close()

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def foreign_token(audience: str, **overrides: object) -> str:
    """A JWT-SVID signed by a key outside the agent's bundle."""
    other = LocalCA()
    spiffe_id = SpiffeId.parse(str(overrides.pop("spiffe_id", "spiffe://example.org/web")))
    now = overrides.pop("now", datetime.now(UTC))
    return mint_jwt_svid(other.jwt_signer, spiffe_id, [audience], now)  # type: ignore[arg-type]


async def test_validate_rejects_forged_and_misused_tokens(socket_dir: Path) -> None:
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        signer = agent.ca.jwt_signer
        web = SpiffeId.parse("spiffe://example.org/web")
        header, payload, signature = mint_jwt_svid(signer, web, ["db"], datetime.now(UTC)).split(
            "."
        )
        unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
        cases = {
            "another audience": mint_jwt_svid(signer, web, ["cache"], datetime.now(UTC)),
            "expired": mint_jwt_svid(
                signer, web, ["db"], datetime.now(UTC) - timedelta(hours=1), timedelta(minutes=5)
            ),
            "signed by another key": foreign_token("db"),
            "another trust domain": mint_jwt_svid(
                signer, SpiffeId.parse("spiffe://evil.org/web"), ["db"], datetime.now(UTC)
            ),
            "alg none": f"{unsigned_header.decode()}.{payload}.",
            "tampered payload": f"{header}.{payload[:-4]}AAAA.{signature}",
            "not a JWT": "x" * 10_000,
        }
        codes = {}
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            for name, token in cases.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ValidateJWTSVID(
                        workload_pb2.ValidateJWTSVIDRequest(audience="db", svid=token),
                        metadata=HEADER,
                    )
                codes[name] = caught.value.code()

    assert codes == dict.fromkeys(cases, grpc.StatusCode.INVALID_ARGUMENT)


async def test_logs_carry_no_keys_or_tokens(socket_dir: Path) -> None:
    # Every call path at debug level, successful and failed: no private key, in PEM, DER or
    # base64, and no token may reach a log line or its fields.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("warden")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        async with running_agent(socket_dir) as agent:
            agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
            async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
                stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                x509_response = await first_x509(stub)
                jwt_response = await stub.FetchJWTSVID(
                    workload_pb2.JWTSVIDRequest(audience=["db"]), metadata=HEADER
                )
                token = jwt_response.svids[0].svid
                await stub.ValidateJWTSVID(
                    workload_pb2.ValidateJWTSVIDRequest(audience="db", svid=token),
                    metadata=HEADER,
                )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.ValidateJWTSVID(
                        workload_pb2.ValidateJWTSVIDRequest(audience="other", svid=token),
                        metadata=HEADER,
                    )
            agent.delete(*agent.ca.entries.values())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    key_der = x509_response.svids[0].x509_svid_key
    key = serialization.load_der_private_key(key_der, password=None)
    secrets = {
        "token": token,
        "token signature": token.rsplit(".", 1)[1],
        "key in base64": base64.b64encode(key_der).decode()[40:80],
        "key in hex": key_der.hex()[40:80],
        "key in PEM": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        .splitlines()[1],
    }
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in records]
    assert len(lines) > 3
    for name, secret in secrets.items():
        assert not [line for line in lines if secret in line], f"{name} found in the logs"


# Attacks warden.mtls withstands.


def signed_leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    uris: list[str],
    *,
    ca: bool = False,
    not_before: datetime | None = None,
    lifetime: timedelta = timedelta(hours=1),
) -> x509.Certificate:
    """A certificate with the given URI SANs, signed by any key: how an attacker forges one."""
    start = not_before or datetime.now(UTC) - timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        # A name of its own, so that no certificate looks self-issued to OpenSSL.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, os.urandom(8).hex())]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri) for uri in uris]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def forged_client_chains(ca: LocalCA) -> dict[str, tuple[list[x509.Certificate], object]]:
    """Client chains a peer without the right credentials might present, by attack."""
    ca_key = ca.ca.private_key
    workload_key = ec.generate_private_key(ec.SECP256R1())
    workload = signed_leaf(ca.ca.certificate, ca_key, workload_key, [CLIENT_ID])  # type: ignore[arg-type]
    forged_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    return {
        # A workload uses its own SVID, which is no CA, to sign one for another ID.
        "SVID used as a CA": (
            [signed_leaf(workload, workload_key, forged_key, [ADMIN_ID]), workload],
            forged_key,
        ),
        "expired SVID": (
            [
                signed_leaf(
                    ca.ca.certificate,
                    ca_key,  # type: ignore[arg-type]
                    other_key,
                    [ADMIN_ID],
                    not_before=datetime.now(UTC) - timedelta(hours=2),
                )
            ],
            other_key,
        ),
        "two SPIFFE IDs": (
            [signed_leaf(ca.ca.certificate, ca_key, other_key, [ADMIN_ID, CLIENT_ID])],  # type: ignore[arg-type]
            other_key,
        ),
        "CA certificate as the leaf": (
            [signed_leaf(ca.ca.certificate, ca_key, other_key, [ADMIN_ID], ca=True)],  # type: ignore[arg-type]
            other_key,
        ),
        # The trust domain CA's name as issuer, but another key's signature.
        "our CA's name, another key": (
            [signed_leaf(ca.ca.certificate, other_key, other_key, [ADMIN_ID])],
            other_key,
        ),
    }


ADMIN_ID = "spiffe://example.org/admin"
CLIENT_ID = "spiffe://example.org/client"
SERVER_ID = "spiffe://example.org/server"


def present_chain(
    chain: list[x509.Certificate], key: object, server_side: MtlsContext | ssl.SSLContext
) -> Exception | SpiffeId:
    """Run one handshake on a socket pair: a raw client presents `chain`, the server checks."""
    server_socket, client_socket = socket.socketpair()
    outcome: dict[str, Exception | SpiffeId] = {}

    def serve() -> None:
        try:
            if isinstance(server_side, MtlsContext):
                outcome["result"] = handshake(server_side.connection(server_socket), timeout=5)
            else:
                with server_side.wrap_socket(server_socket, server_side=True) as wrapped:
                    outcome["result"] = check_peer(wrapped)
        except Exception as error:
            outcome["result"] = error

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.use_certificate(chain[0])  # type: ignore[arg-type]
    for certificate in chain[1:]:
        context.add_extra_chain_cert(certificate)  # type: ignore[arg-type]
    context.use_privatekey(key)  # type: ignore[arg-type]
    context.set_verify(SSL.VERIFY_NONE)
    connection = SSL.Connection(context, client_socket)
    connection.set_connect_state()
    with contextlib.suppress(SSL.Error, OSError):
        connection.do_handshake()
        connection.sendall(b"hello")
    thread.join(10)
    client_socket.close()
    server_socket.close()
    return outcome["result"]


@pytest.mark.parametrize("side", ["pyOpenSSL", "ssl"])
def test_forged_client_chains_rejected(side: str) -> None:
    ca = LocalCA()
    source = StaticSource(issue(ca, SERVER_ID), ca)
    server_side: MtlsContext | ssl.SSLContext = (
        server_context(source, authorize_any())
        if side == "pyOpenSSL"
        else ssl_server_context(source, authorize_member_of("example.org"))
    )

    outcomes = {
        name: present_chain(chain, key, server_side)
        for name, (chain, key) in forged_client_chains(ca).items()
    }
    genuine_key = ec.generate_private_key(ec.SECP256R1())
    genuine = signed_leaf(ca.ca.certificate, ca.ca.private_key, genuine_key, [CLIENT_ID])  # type: ignore[arg-type]
    accepted = present_chain([genuine], genuine_key, server_side)

    assert accepted == SpiffeId.parse(CLIENT_ID)
    for name, outcome in outcomes.items():
        assert isinstance(outcome, (PeerRejectedError, ssl.SSLError, OSError)), (
            f"{name}: accepted as {outcome}"
        )


# Crashes and restarts.

AGENT_PROCESS = """
import asyncio, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from agent_support import make_entry, running_agent

async def main():
    async with running_agent(Path(sys.argv[1])) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{os.geteuid()}"))
        await agent.wait_for_svids(1)
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_agent_restarts_on_same_socket(socket_dir: Path) -> None:
    # SIGKILL leaves the socket file behind; the next agent must take the path over without
    # an operator removing it, and serve at once.
    agent_dir = Path(__file__).resolve().parent.parent / "agent"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT_PROCESS,
        str(socket_dir),
        str(agent_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    finally:
        process.kill()
        await process.wait()
    left_behind = stat.S_ISSOCK((socket_dir / "api.sock").lstat().st_mode)

    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            response = await first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel))

    assert left_behind
    assert [svid.spiffe_id for svid in response.svids] == ["spiffe://example.org/web"]


async def test_fetch_write_to_unwritable_directory_fails_cleanly(socket_dir: Path) -> None:
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "warden",
            "api",
            "fetch",
            "x509",
            "-socketPath",
            str(agent.socket_path),
            "-write",
            "/proc/warden-test-svids",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    assert b"Traceback" not in stdout + stderr
    assert stderr.startswith(b"error: ")
    assert b"/proc/warden-test-svids" in stderr


async def test_fetch_write_replaces_planted_symlinks(socket_dir: Path, tmp_path: Path) -> None:
    # `warden api fetch x509 -write DIR` into a directory where someone planted symbolic
    # links named like its files: the key must not be written through a link.
    from warden.cli.workload import _write_context

    target = tmp_path / "elsewhere"
    target.write_text("not a key")
    out = tmp_path / "out"
    out.mkdir()
    (out / "svid.0.key").symlink_to(target)
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        client = WorkloadApiClient(f"unix://{agent.socket_path}")
        try:
            context = await asyncio.to_thread(client.fetch_x509_context)
        finally:
            client.close()
    _write_context(context, out)

    key_file = out / "svid.0.key"
    assert target.read_text() == "not a key"
    assert not key_file.is_symlink()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
