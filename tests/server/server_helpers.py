"""A minimal agent for server tests: attests with a join token and calls the agent API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.api.server.v1 import agent_pb2, agent_pb2_grpc
from warden.api.transport import ClientBridge, ClientCredentials
from warden.server.options import ServerOptions
from warden.spiffe import SpiffeId, TrustDomain
from warden.spiffe.bundle import Bundle


def server_options(tmp_path: Path, **overrides: object) -> ServerOptions:
    values: dict[str, object] = {
        "trust_domain": TrustDomain("example.org"),
        "data_dir": tmp_path / "data",
        "bind_address": "127.0.0.1",
        "bind_port": 0,
        "socket_path": tmp_path / "admin" / "api.sock",
        "node_attestors": {"join_token": {}},
        "ratelimit_attestation": False,
        "event_poll_interval": 0.05,
    }
    values.update(overrides)
    return ServerOptions(**values)  # type: ignore[arg-type]


def make_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


@dataclass
class MiniAgent:
    port: int
    trust_domain: TrustDomain = field(default_factory=lambda: TrustDomain("example.org"))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    chain: tuple[x509.Certificate, ...] = ()
    bundle: Bundle | None = None
    bridge: ClientBridge | None = None
    channel: grpc.aio.Channel | None = None

    def credentials(self) -> ClientCredentials:
        bundle_pem = self.bundle.to_pem().encode() if self.bundle is not None else None
        return ClientCredentials(bundle_pem, self.chain, self.key if self.chain else None)

    async def connect(self) -> agent_pb2_grpc.AgentAPIStub:
        if self.bridge is None:
            self.bridge = ClientBridge(
                "127.0.0.1",
                self.port,
                self.credentials,
                SpiffeId.from_segments(self.trust_domain, "spire", "server"),
            )
            await self.bridge.start()
        if self.channel is None:
            # A local subchannel pool, so that a new channel opens a new TLS connection (with
            # the new SVID) instead of sharing the old one.
            self.channel = grpc.aio.insecure_channel(
                self.bridge.target, options=[("grpc.use_local_subchannel_pool", 1)]
            )
        return agent_pb2_grpc.AgentAPIStub(self.channel)

    async def reconnect(self) -> agent_pb2_grpc.AgentAPIStub:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        return await self.connect()

    async def attest_join_token(self, token: str) -> agent_pb2.AttestAgentResponse.Result:
        stub = await self.connect()
        call = stub.AttestAgent()
        await call.write(
            agent_pb2.AttestAgentRequest(
                params=agent_pb2.AttestAgentRequest.Params(
                    data=agent_pb2.AttestationData(type="join_token", payload=token.encode()),
                    csr=make_csr(self.key),
                )
            )
        )
        await call.done_writing()
        response = await call.read()
        result = response.result
        self.chain = tuple(x509.load_der_x509_certificate(der) for der in result.svid.cert_chain)
        self.bundle = Bundle.from_jwks_json(self.trust_domain, result.bundle.spiffe_json)
        # The next connection presents the new SVID.
        await self.reconnect()
        return result

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.bridge is not None:
            await self.bridge.close()
