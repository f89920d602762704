"""Tools for attacking a Warden server in tests: servers, agents, certificates, raw clients.

Every server here is the test's own: data in the test's tmp_path, free loopback ports, an
admin socket under tmp_path. Nothing here reaches a host other than 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from warden.api.server.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, types_pb2
from warden.api.transport import ClientBridge, ClientCredentials
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.server.metrics import Metrics
from warden.server.nodeattest.x509pop import encode_payload, sign_challenge
from warden.server.options import ServerOptions
from warden.spiffe import SpiffeId, TrustDomain
from warden.spiffe.bundle import Bundle

TRUST_DOMAIN = "example.org"
WARDEN = [sys.executable, "-m", "warden"]


class Clock:
    """A server clock that starts at the real time and moves only through `advance`."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def server_options(tmp_path: Path, **overrides: Any) -> ServerOptions:
    values: dict[str, Any] = {
        "trust_domain": TrustDomain(TRUST_DOMAIN),
        "data_dir": tmp_path / "data",
        "bind_address": "127.0.0.1",
        "bind_port": 0,
        "socket_path": tmp_path / "admin" / "api.sock",
        "node_attestors": {"join_token": {}},
        "ratelimit_attestation": False,
        "event_poll_interval": 0.05,
    }
    values.update(overrides)
    return ServerOptions(**values)


@contextlib.asynccontextmanager
async def running_server(
    tmp_path: Path, clock: Callable[[], dt.datetime] | None = None, **overrides: Any
) -> AsyncIterator[WardenServer]:
    """A server in this event loop, stopped on exit."""
    arguments: dict[str, Any] = {"metrics": Metrics(CollectorRegistry())}
    if clock is not None:
        arguments["clock"] = clock
    server = WardenServer(server_options(tmp_path, **overrides), **arguments)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def admin_client(server: WardenServer) -> AdminClient:
    return AdminClient(str(server.options.socket_path), timeout=30)


async def admin(server: WardenServer, method: str, request: Any) -> Any:
    """Call `<service>.<Method>` (for example "entries.BatchCreateEntry") on the admin socket."""
    service, name = method.split(".")

    def call() -> Any:
        with admin_client(server) as client:
            return getattr(getattr(client, service), name)(request, timeout=30)

    return await asyncio.to_thread(call)


def entry(spiffe_id: str, parent_id: str, selector: str = "unix:uid:1000", **fields: Any) -> Any:
    selector_type, _, value = selector.partition(":")
    values: dict[str, Any] = {
        "spiffe_id": spiffe_id,
        "parent_id": parent_id,
        "selectors": [types_pb2.Selector(type=selector_type, value=value)],
        "owner": "web-team",
    }
    values.update(fields)
    return types_pb2.Entry(**values)


async def create_entries(server: WardenServer, *entries: Any) -> list[Any]:
    """Create entries and return the per-entry results (status and entry)."""
    response = await admin(
        server, "entries.BatchCreateEntry", admin_pb2.BatchCreateEntryRequest(entries=entries)
    )
    return list(response.results)


async def create_entry(server: WardenServer, *args: Any, **fields: Any) -> Any:
    (result,) = await create_entries(server, entry(*args, **fields))
    assert result.status.code == 0, result.status.message
    return result.entry


async def join_token(server: WardenServer, ttl: int = 600, alias: str = "") -> str:
    token = await admin(
        server,
        "agents.CreateJoinToken",
        admin_pb2.CreateJoinTokenRequest(ttl=ttl, owner="platform-team", alias_spiffe_id=alias),
    )
    return str(token.value)


def make_csr(key: Any) -> bytes:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def uri_san(certificate: x509.Certificate) -> str:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(names.get_values_for_type(x509.UniformResourceIdentifier)[0])


@dataclass
class Agent:
    """An agent client over the server's TLS listener, through Warden's own TLS bridge.

    `chain` and `key` are what it presents; `bundle` is what it trusts (None: insecure
    bootstrap, as a first attestation).
    """

    port: int
    key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    chain: tuple[x509.Certificate, ...] = ()
    bundle_pem: bytes | None = None
    bridge: ClientBridge | None = None
    channel: grpc.aio.Channel | None = None

    @property
    def spiffe_id(self) -> str:
        return uri_san(self.chain[0])

    def credentials(self) -> ClientCredentials:
        return ClientCredentials(self.bundle_pem, self.chain, self.key if self.chain else None)

    async def stub(self) -> agent_pb2_grpc.AgentAPIStub:
        if self.bridge is None:
            self.bridge = ClientBridge(
                "127.0.0.1",
                self.port,
                self.credentials,
                SpiffeId.from_segments(TrustDomain(TRUST_DOMAIN), "spire", "server"),
            )
            await self.bridge.start()
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(
                self.bridge.target, options=[("grpc.use_local_subchannel_pool", 1)]
            )
        return agent_pb2_grpc.AgentAPIStub(self.channel)

    async def reconnect(self) -> agent_pb2_grpc.AgentAPIStub:
        """Open a new TLS connection, which presents the current chain."""
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        return await self.stub()

    def adopt(self, result: Any) -> None:
        """Take the SVID and bundle of an attestation result."""
        self.chain = tuple(x509.load_der_x509_certificate(der) for der in result.svid.cert_chain)
        bundle = Bundle.from_jwks_json(TrustDomain(TRUST_DOMAIN), result.bundle.spiffe_json)
        self.bundle_pem = bundle.to_pem().encode()

    async def attest(self, attestor: str, payload: bytes) -> Any:
        """Attest without a challenge; return the attestation result."""
        stub = await self.stub()
        call = stub.AttestAgent()
        await call.write(params(attestor, payload, make_csr(self.key)))
        await call.done_writing()
        response = await call.read()
        self.adopt(response.result)
        await self.reconnect()
        return response.result

    async def attest_join_token(self, token: str) -> Any:
        return await self.attest("join_token", token.encode())

    async def attest_x509pop(self, chain: Sequence[x509.Certificate], proof_key: Any) -> Any:
        stub = await self.stub()
        call = stub.AttestAgent()
        await call.write(params("x509pop", encode_payload(chain), make_csr(self.key)))
        challenge = await call.read()
        await call.write(
            agent_pb2.AttestAgentRequest(
                challenge_response=sign_challenge(proof_key, challenge.challenge)
            )
        )
        response = await call.read()
        self.adopt(response.result)
        await self.reconnect()
        return response.result

    async def sign(self, entry_id: str, key: Any | None = None) -> Any:
        """Ask for one X509-SVID; return the per-entry result."""
        stub = await self.stub()
        csr = make_csr(key or ec.generate_private_key(ec.SECP256R1()))
        response = await stub.BatchNewX509SVID(
            agent_pb2.BatchNewX509SVIDRequest(
                params=[agent_pb2.NewX509SVIDParams(entry_id=entry_id, csr=csr)]
            ),
            timeout=10,
        )
        return response.results[0]

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        if self.bridge is not None:
            await self.bridge.close()
            self.bridge = None


def params(attestor: str, payload: bytes, csr: bytes) -> Any:
    return agent_pb2.AttestAgentRequest(
        params=agent_pb2.AttestAgentRequest.Params(
            data=agent_pb2.AttestationData(type=attestor, payload=payload), csr=csr
        )
    )


async def joined_agent(server: WardenServer) -> Agent:
    agent = Agent(server.tls_port)
    await agent.attest_join_token(await join_token(server))
    return agent


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    certificate: x509.Certificate
    key: Any


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(
    common_name: str,
    issuer: Issuer | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    uri: str | None = None,
    key: Any | None = None,
    lifetime: dt.timedelta = dt.timedelta(days=1),
) -> Issuer:
    """A certificate and its key: self-signed without `issuer`, a CA with `ca`."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
        )
    signer = issuer.key if issuer else key
    return Issuer(builder.sign(signer, hashes.SHA256()), key)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


# -- a server in its own process --------------------------------------------------------------

CONFIG = """
server {{
  bind_address = "127.0.0.1"
  bind_port = "0"
  trust_domain = "{trust_domain}"
  data_dir = "{data_dir}"
  socket_path = "{socket}"
  log_level = "{log_level}"
  log_format = "{log_format}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""


@dataclass
class ServerProcess:
    """`warden server run` in its own process, with its log in a file."""

    directory: Path
    log_level: str = "info"
    log_format: str = "json"
    open_files_limit: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "server.conf"

    @property
    def socket(self) -> Path:
        return self.directory / "admin" / "api.sock"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def write_config(self) -> None:
        self.config.write_text(
            CONFIG.format(
                trust_domain=TRUST_DOMAIN,
                data_dir=self.data_dir,
                socket=self.socket,
                log_level=self.log_level,
                log_format=self.log_format,
            )
        )

    def _limit(self) -> None:
        if self.open_files_limit is not None:
            limit = self.open_files_limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*WARDEN, "server", "run", "-config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit if self.open_files_limit else None,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            if self.socket.exists() and self.healthy():
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not become healthy: {self.log.read_text()}")

    def healthy(self) -> bool:
        try:
            with AdminClient(str(self.socket), timeout=5) as client:
                status = client.get_status()
        except Exception:
            return False
        return bool(status.live and status.ready)

    def tls_port(self) -> int:
        """The TLS port of the latest start, read from the JSON log."""
        started = [line for line in self.log.read_text().splitlines() if '"server started"' in line]
        if not started:
            raise AssertionError(f"no 'server started' line in {self.log}")
        return int(json.loads(started[-1])["address"].rsplit(":", 1)[1])

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [*WARDEN, *arguments]
        if "-config" not in arguments:
            command += ["-socketPath", str(self.socket)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a power loss or the OOM killer would leave it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=20)
        self.process = None


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WARDEN, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
