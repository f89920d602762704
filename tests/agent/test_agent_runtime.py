"""The agent process against a real Warden server: attestation, sync, signing, renewal,
outages, eviction and bans.

The server runs in the test's event loop with SQLite in a temporary directory; the agent runs
beside it, and workloads call its Workload API with Warden's client in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from agent_support import public_socket_dir
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from warden.agent.attestor import UnixAttestor
from warden.agent.nodeattest import JoinTokenAttestor, X509PopAttestor
from warden.agent.runtime import Agent, AgentOptions
from warden.api.server.v1 import admin_pb2, types_pb2
from warden.mtls import WorkloadApiClient, WorkloadApiError
from warden.pki.keys import DiskKeyManager
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.server.metrics import Metrics
from warden.server.options import ServerOptions
from warden.spiffe import Bundle, TrustDomain

UID = os.geteuid()
TRUST_DOMAIN = TrustDomain("example.org")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Setup:
    root: Path
    socket_dir: Path
    options: ServerOptions
    server: WardenServer | None = None

    @property
    def admin(self) -> AdminClient:
        return AdminClient(str(self.options.socket_path))

    async def start_server(self) -> WardenServer:
        self.server = WardenServer(self.options, metrics=Metrics(CollectorRegistry()))
        await self.server.start()
        return self.server

    async def stop_server(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def call(self, function: Callable[..., object], *args: object) -> object:
        return await asyncio.to_thread(function, *args)

    async def join_token(self) -> str:
        with self.admin as admin:
            token = await asyncio.to_thread(admin.create_join_token, 600, "platform-team")
        return str(token.value)

    async def create_entry(
        self, spiffe_id: str, parent_id: str, *selectors: str, **fields: object
    ) -> str:
        entry = types_pb2.Entry(
            spiffe_id=spiffe_id,
            parent_id=parent_id,
            selectors=[
                types_pb2.Selector(type=s.split(":", 1)[0], value=s.split(":", 1)[1])
                for s in selectors
            ],
            owner="team-web",
            **fields,  # type: ignore[arg-type]
        )
        with self.admin as admin:
            response = await asyncio.to_thread(admin.create_entries, [entry])
        result = response.results[0]
        assert result.status.code == 0, result.status.message
        return str(result.entry.id)

    async def delete_entry(self, entry_id: str) -> None:
        with self.admin as admin:
            await asyncio.to_thread(
                admin.call,
                admin.entries.BatchDeleteEntry,
                admin_pb2.BatchDeleteEntryRequest(ids=[entry_id]),
            )

    async def agents(self, method: str, spiffe_id: str) -> None:
        with self.admin as admin:
            request = getattr(admin_pb2, f"{method}Request")(spiffe_id=spiffe_id)
            await asyncio.to_thread(admin.call, getattr(admin.agents, method), request)

    async def bundle(self) -> Bundle:
        with self.admin as admin:
            message = await asyncio.to_thread(admin.get_bundle)
        return Bundle.from_jwks_json(TRUST_DOMAIN, message.spiffe_json)

    async def agent_options(
        self, data_dir: Path, attestor: object, **overrides: object
    ) -> AgentOptions:
        options = AgentOptions(
            trust_domain=TRUST_DOMAIN,
            server_host="127.0.0.1",
            server_port=self.options.bind_port,
            socket_path=self.socket_dir / "agent.sock",
            data_dir=data_dir,
            node_attestor=attestor,  # type: ignore[arg-type]
            key_manager=DiskKeyManager(data_dir / "keys"),
            workload_attestors=[UnixAttestor()],
            bootstrap_bundle=await self.bundle(),
            retry_max=1.0,
            usage_interval=0.2,
        )
        return replace(options, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    socket_dir = public_socket_dir()
    options = ServerOptions(
        trust_domain=TRUST_DOMAIN,
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={"join_token": {}},
        ratelimit_attestation=False,
        event_poll_interval=0.05,
    )
    state = Setup(tmp_path, socket_dir, options)
    await state.start_server()
    try:
        yield state
    finally:
        await state.stop_server()
        shutil.rmtree(socket_dir, ignore_errors=True)


class RunningAgent:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.task = asyncio.create_task(agent.run())

    async def ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.agent.synced.is_set():
            if self.task.done():
                raise AssertionError(f"the agent stopped: {self.agent.stop_reason}")
            if time.monotonic() > deadline:
                raise AssertionError("the agent did not sync in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        self.agent.stop("test finished")
        return await asyncio.wait_for(self.task, 20)

    @property
    def spiffe_id(self) -> str:
        assert self.agent.identity is not None
        return str(self.agent.identity.spiffe_id)


async def fetch(socket_path: Path) -> list[str]:
    def call() -> list[str]:
        with WorkloadApiClient(f"unix://{socket_path}", timeout=10) as client:
            return [str(svid.spiffe_id) for svid in client.fetch_x509_context().svids]

    return await asyncio.to_thread(call)


async def eventually_fetch(socket_path: Path, expected: list[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await fetch(socket_path)
            if last == expected:
                return
        except WorkloadApiError as error:
            last = error
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {expected}, last result {last}")


async def test_join_token_agent_serves_registered_workload(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    try:
        await agent.ready()
        assert agent.spiffe_id.startswith("spiffe://example.org/spire/agent/join_token/")
        await setup.create_entry("spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}")

        await eventually_fetch(setup.socket_dir / "agent.sock", ["spiffe://example.org/web"])
    finally:
        assert await agent.stop() == 0

    stored = json.loads((setup.root / "agent" / "agent_state.json").read_text())
    assert stored["spiffe_id"] == agent.spiffe_id
    assert stored["reattestable"] is False
    assert oct((setup.root / "agent" / "keys").stat().st_mode & 0o777) == "0o700"


async def test_restart_reuses_stored_svid(setup: Setup) -> None:
    token = await setup.join_token()
    options = await setup.agent_options(setup.root / "agent", JoinTokenAttestor(token))
    first = RunningAgent(Agent(options))
    await first.ready()
    agent_id = first.spiffe_id
    await setup.create_entry("spiffe://example.org/web", agent_id, f"unix:uid:{UID}")
    await eventually_fetch(setup.socket_dir / "agent.sock", ["spiffe://example.org/web"])
    assert await first.stop() == 0

    # The token is used up; the stored SVID must be enough to start again.
    second = RunningAgent(
        Agent(await setup.agent_options(setup.root / "agent", JoinTokenAttestor(token)))
    )
    try:
        await second.ready()
        assert second.spiffe_id == agent_id
        await eventually_fetch(setup.socket_dir / "agent.sock", ["spiffe://example.org/web"])
    finally:
        await second.stop()


async def test_server_outage_keeps_cached_svids(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    socket_path = setup.socket_dir / "agent.sock"
    try:
        await agent.ready()
        await setup.create_entry("spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}")
        await eventually_fetch(socket_path, ["spiffe://example.org/web"])

        await setup.stop_server()
        assert await fetch(socket_path) == ["spiffe://example.org/web"]
        await asyncio.sleep(1.5)  # the agent notices and starts retrying
        assert await fetch(socket_path) == ["spiffe://example.org/web"]

        await setup.start_server()
        await setup.create_entry(
            "spiffe://example.org/admin", agent.spiffe_id, f"unix:uid:{UID}", created_at=0
        )
        await eventually_fetch(
            socket_path, ["spiffe://example.org/web", "spiffe://example.org/admin"], timeout=20
        )
    finally:
        await agent.stop()


async def test_deleted_entry_withdrawn_within_a_second(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    socket_path = setup.socket_dir / "agent.sock"
    try:
        await agent.ready()
        entry_id = await setup.create_entry(
            "spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}"
        )
        await eventually_fetch(socket_path, ["spiffe://example.org/web"])
        first = asyncio.get_running_loop().create_future()
        ended = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def stream() -> None:
            # A streaming workload: it holds the SVID until the stream says otherwise.
            with WorkloadApiClient(f"unix://{socket_path}") as client:
                try:
                    for context in client.stream_x509_contexts():
                        loop.call_soon_threadsafe(
                            lambda c=context: first.done() or first.set_result(c)
                        )
                except WorkloadApiError as error:
                    loop.call_soon_threadsafe(ended.set_result, (error.code, time.monotonic()))

        reader = asyncio.create_task(asyncio.to_thread(stream))
        await asyncio.wait_for(first, 10)

        deleted_at = time.monotonic()
        await setup.delete_entry(entry_id)
        code, ended_at = await asyncio.wait_for(ended, 10)
        await reader
    finally:
        await agent.stop()

    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert ended_at - deleted_at < 1.0


async def test_pyspiffe_client_against_agent(setup: Setup) -> None:
    import sys

    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    socket_path = setup.socket_dir / "agent.sock"
    try:
        await agent.ready()
        await setup.create_entry("spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}")
        await eventually_fetch(socket_path, ["spiffe://example.org/web"])
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).parent / "pyspiffe_client.py"),
            "fetch",
            str(socket_path),
            "spiffe://example.org/db",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await agent.stop()

    assert process.returncode == 0, stderr.decode()[-2000:]
    result = json.loads(stdout)
    assert result["spiffe_id"] == "spiffe://example.org/web"
    assert result["validated_id"] == "spiffe://example.org/web"
    assert result["jwt_source_validated"] == "spiffe://example.org/web"


async def test_deliveries_reported_to_server(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    try:
        await agent.ready()
        entry_id = await setup.create_entry(
            "spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}"
        )
        await eventually_fetch(setup.socket_dir / "agent.sock", ["spiffe://example.org/web"])

        deadline = time.monotonic() + 10
        delivered = 0
        while not delivered and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with setup.admin as admin:
                entry = await asyncio.to_thread(
                    admin.call, admin.entries.GetEntry, admin_pb2.GetEntryRequest(id=entry_id)
                )
            delivered = entry.last_delivered_at
    finally:
        await agent.stop()

    assert delivered > 0


async def test_evicted_agent_stops_and_forgets_svid(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    await agent.ready()

    await setup.agents("EvictAgent", agent.spiffe_id)
    code = await asyncio.wait_for(agent.task, 20)

    assert code == 1
    assert "evicted" in (agent.agent.stop_reason or "")
    assert not (setup.root / "agent" / "agent_state.json").exists()


async def test_banned_agent_stops_with_reason(setup: Setup) -> None:
    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent", JoinTokenAttestor(await setup.join_token())
            )
        )
    )
    await agent.ready()

    await setup.agents("BanAgent", agent.spiffe_id)
    code = await asyncio.wait_for(agent.task, 20)

    assert code == 1
    assert "banned" in (agent.agent.stop_reason or "")


async def test_used_join_token_cannot_start_fresh_agent(setup: Setup) -> None:
    token = await setup.join_token()
    first = RunningAgent(
        Agent(await setup.agent_options(setup.root / "one", JoinTokenAttestor(token)))
    )
    await first.ready()
    await first.stop()

    second = Agent(
        await setup.agent_options(
            setup.root / "two", JoinTokenAttestor(token), socket_path=setup.socket_dir / "two.sock"
        )
    )
    code = await asyncio.wait_for(second.run(), 20)

    assert code == 1
    assert "already used" in (second.stop_reason or "")


async def test_agent_svid_renewed_at_half_life(tmp_path: Path) -> None:
    socket_dir = public_socket_dir()
    options = ServerOptions(
        trust_domain=TRUST_DOMAIN,
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={"join_token": {}},
        ratelimit_attestation=False,
        event_poll_interval=0.05,
        agent_ttl=timedelta(seconds=8),
    )
    setup = Setup(tmp_path, socket_dir, options)
    await setup.start_server()
    try:
        agent = RunningAgent(
            Agent(
                await setup.agent_options(
                    tmp_path / "agent", JoinTokenAttestor(await setup.join_token())
                )
            )
        )
        await agent.ready()
        assert agent.agent.identity is not None
        first = agent.agent.identity.chain[0].serial_number
        await setup.create_entry("spiffe://example.org/web", agent.spiffe_id, f"unix:uid:{UID}")

        deadline = time.monotonic() + 15
        while agent.agent.identity.chain[0].serial_number == first:
            assert time.monotonic() < deadline, "the agent SVID was not renewed"
            await asyncio.sleep(0.1)
        stored = x509.load_pem_x509_certificates(
            (tmp_path / "agent" / "agent_svid.pem").read_bytes()
        )
        assert stored[0].serial_number == agent.agent.identity.chain[0].serial_number
        # Calls with the renewed SVID still work: the entry arrives and is served.
        await eventually_fetch(socket_dir / "agent.sock", ["spiffe://example.org/web"])
        assert await agent.stop() == 0
    finally:
        await setup.stop_server()
        shutil.rmtree(socket_dir, ignore_errors=True)


def _node_ca(tmp_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from datetime import UTC, datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


async def test_x509pop_attestation(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    ca_certificate, ca_key = _node_ca(tmp_path)
    (tmp_path / "node-ca.pem").write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    node_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    node_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-7")]))
        .issuer_name(ca_certificate.subject)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "node.pem").write_bytes(node_certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "node.key").write_bytes(
        node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    socket_dir = public_socket_dir()
    options = ServerOptions(
        trust_domain=TRUST_DOMAIN,
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={"x509pop": {"ca_bundle_path": str(tmp_path / "node-ca.pem")}},
        ratelimit_attestation=False,
        event_poll_interval=0.05,
    )
    setup = Setup(tmp_path, socket_dir, options)
    await setup.start_server()
    try:
        attestor = X509PopAttestor(tmp_path / "node.pem", tmp_path / "node.key", None)
        agent = RunningAgent(Agent(await setup.agent_options(tmp_path / "agent", attestor)))
        await agent.ready()
        assert agent.spiffe_id.startswith("spiffe://example.org/spire/agent/x509pop/")
        await setup.create_entry("spiffe://example.org/db", agent.spiffe_id, f"unix:uid:{UID}")
        await eventually_fetch(socket_dir / "agent.sock", ["spiffe://example.org/db"])
        await agent.stop()
    finally:
        await setup.stop_server()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def test_aws_iid_attestation_from_metadata_service(tmp_path: Path) -> None:
    import base64
    from datetime import UTC, datetime

    from agent_fakes import FakeInstanceMetadata
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs7

    from warden.agent.nodeattest import AwsIidAttestor

    # A test CA replaces AWS's RSA-2048 certificate of the region.
    region_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test stand-in for AWS")])
    now = datetime.now(UTC)
    region_certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(region_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(region_key, hashes.SHA256())
    )
    (tmp_path / "aws-certificates.json").write_text(
        json.dumps(
            {"eu-west-1": region_certificate.public_bytes(serialization.Encoding.PEM).decode()}
        )
    )
    document = json.dumps(
        {
            "accountId": "123456789012",
            "availabilityZone": "eu-west-1a",
            "imageId": "ami-0abcdef1234567890",
            "instanceId": "i-0123456789abcdef0",
            "instanceType": "t3.micro",
            "region": "eu-west-1",
            "version": "2017-09-30",
        },
        indent=2,
    ).encode()
    signature = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(document)
        .add_signer(region_certificate, region_key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.NoCerts, pkcs7.PKCS7Options.Binary])
    )
    socket_dir = public_socket_dir()
    options = ServerOptions(
        trust_domain=TRUST_DOMAIN,
        data_dir=tmp_path / "server",
        bind_address="127.0.0.1",
        bind_port=free_port(),
        socket_path=tmp_path / "admin" / "api.sock",
        node_attestors={
            "aws_iid": {"region_certificates_path": str(tmp_path / "aws-certificates.json")}
        },
        ratelimit_attestation=False,
        event_poll_interval=0.05,
    )
    setup = Setup(tmp_path, socket_dir, options)
    await setup.start_server()
    try:
        with FakeInstanceMetadata(document, base64.b64encode(signature).decode()) as metadata:
            attestor = AwsIidAttestor(metadata.endpoint)
            agent = RunningAgent(Agent(await setup.agent_options(tmp_path / "agent", attestor)))
            await agent.ready()
            requests = list(metadata.requests)
        assert agent.spiffe_id == (
            "spiffe://example.org/spire/agent/aws_iid/123456789012/eu-west-1/i-0123456789abcdef0"
        )
        assert requests[0] == ("PUT", "/latest/api/token")
        await setup.create_entry("spiffe://example.org/batch", agent.spiffe_id, f"unix:uid:{UID}")
        await eventually_fetch(socket_dir / "agent.sock", ["spiffe://example.org/batch"])
        await agent.stop()
    finally:
        await setup.stop_server()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def test_agent_run_command_with_config_file(setup: Setup) -> None:
    import signal
    import sys

    bundle_path = setup.root / "bundle.pem"
    bundle_path.write_text((await setup.bundle()).to_pem())
    socket_path = setup.socket_dir / "cli-agent.sock"
    token = await setup.join_token()
    config = setup.root / "agent.conf"
    config.write_text(
        f"""
agent {{
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = "{setup.options.bind_port}"
    socket_path = "{socket_path}"
    data_dir = "{setup.root / "cli-agent"}"
    trust_bundle_path = "{bundle_path}"
    join_token = "{token}"
    log_level = "info"
}}
plugins {{
    NodeAttestor "join_token" {{ plugin_data {{}} }}
    KeyManager "disk" {{ plugin_data {{}} }}
    WorkloadAttestor "unix" {{ plugin_data {{ discover_workload_path = true }} }}
}}
"""
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        "agent",
        "run",
        "-config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (setup.root / "cli-agent" / "agent_state.json").exists():
            assert process.returncode is None, "the agent exited early"
            assert time.monotonic() < deadline, "the agent did not attest"
            await asyncio.sleep(0.1)
        agent_id = json.loads((setup.root / "cli-agent" / "agent_state.json").read_text())[
            "spiffe_id"
        ]
        await setup.create_entry("spiffe://example.org/cli", agent_id, f"unix:uid:{UID}")
        await eventually_fetch(socket_path, ["spiffe://example.org/cli"])
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "agent stopped" in stderr.decode()
    # The token is a secret: the agent ID contains it, but no log line shows it otherwise.
    log = stderr.decode().replace(f"join_token/{token}", "join_token/<id>")
    assert token not in log


async def test_agent_health_and_metrics_endpoints(setup: Setup) -> None:
    import httpx

    from warden.agent.observability import ListenerSettings

    agent = RunningAgent(
        Agent(
            await setup.agent_options(
                setup.root / "agent",
                JoinTokenAttestor(await setup.join_token()),
                health_listener=ListenerSettings("127.0.0.1", 0),
                prometheus_listener=ListenerSettings("127.0.0.1", 0),
            )
        )
    )
    try:
        await agent.ready()
        health_port, metrics_port = agent.agent.observability.ports
        async with httpx.AsyncClient() as client:
            live = await client.get(f"http://127.0.0.1:{health_port}/live")
            ready = await client.get(f"http://127.0.0.1:{health_port}/ready")
            missing = await client.get(f"http://127.0.0.1:{health_port}/nothing")
            scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert live.status_code == 200
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert missing.status_code == 404
        assert "spire_agent_ready 1.0" in scraped.text
        assert "spire_agent_uptime_in_ms" in scraped.text
    finally:
        assert await agent.stop() == 0
