"""CA rotation in a running server, x509pop attestation, admins over mTLS, health and metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from server_helpers import MiniAgent, make_csr, server_options

from warden.api.server.v1 import admin_pb2, admin_pb2_grpc, agent_pb2
from warden.server.app import WardenServer
from warden.server.metrics import Metrics
from warden.server.nodeattest.x509pop import encode_payload, sign_challenge
from warden.spiffe import SpiffeId, validate_x509_svid


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def sign(server: WardenServer, spiffe_id: str, ttl: int) -> list[x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    svid = await server.signing.mint_x509(spiffe_id, make_csr(key), ttl, [], "test")
    return [x509.load_der_x509_certificate(der) for der in svid.cert_chain]


async def test_ca_rotates_while_svids_keep_verifying(tmp_path: Path) -> None:
    clock = Clock()
    options = server_options(
        tmp_path,
        ca_ttl=dt.timedelta(minutes=2),
        default_x509_svid_ttl=dt.timedelta(seconds=20),
        default_jwt_svid_ttl=dt.timedelta(seconds=20),
        rotation_interval=3600,
    )
    server = WardenServer(options, clock=clock, metrics=Metrics(CollectorRegistry()))
    await server.start()
    try:
        first_ca = server.ca.x509_ca.certificate
        assert len(server.bundle.x509_authorities) == 1

        clock.advance(61)  # past half of the CA's lifetime: the next CA is prepared
        await server._rotate()
        assert len(server.bundle.x509_authorities) == 2
        assert server.ca.x509_ca.certificate == first_ca

        clock.advance(34)  # 95 s: still the first CA
        before = await sign(server, "spiffe://example.org/before", 20)

        clock.advance(6)  # 101 s: a sixth of the lifetime remains, the next CA is active
        await server._rotate()
        assert server.ca.x509_ca.certificate != first_ca
        after = await sign(server, "spiffe://example.org/after", 20)

        assert (
            str(validate_x509_svid(before, server.bundle, clock.now))
            == "spiffe://example.org/before"
        )
        assert (
            str(validate_x509_svid(after, server.bundle, clock.now)) == "spiffe://example.org/after"
        )

        clock.advance(20)  # 121 s: the first CA has expired and leaves the bundle
        await server._rotate()
        assert first_ca not in server.bundle.x509_authorities
        assert str(
            validate_x509_svid(after, server.bundle, clock.now - dt.timedelta(seconds=1))
        ) == ("spiffe://example.org/after")
    finally:
        await server.stop()


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _node_certificate(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(ca[1], hashes.SHA256())
    )
    return certificate, key


async def attest_x509pop(
    agent: MiniAgent, chain: list[x509.Certificate], proof_key
) -> agent_pb2.AttestAgentResponse:
    stub = await agent.connect()
    call = stub.AttestAgent()
    await call.write(
        agent_pb2.AttestAgentRequest(
            params=agent_pb2.AttestAgentRequest.Params(
                data=agent_pb2.AttestationData(type="x509pop", payload=encode_payload(chain)),
                csr=make_csr(agent.key),
            )
        )
    )
    challenge = await call.read()
    await call.write(
        agent_pb2.AttestAgentRequest(
            challenge_response=sign_challenge(proof_key, challenge.challenge)
        )
    )
    return await call.read()


async def test_x509pop_attestation_with_challenge(tmp_path: Path) -> None:
    trusted = _ca("node CA")
    bundle = tmp_path / "node-ca.pem"
    bundle.write_bytes(trusted[0].public_bytes(serialization.Encoding.PEM))
    options = server_options(tmp_path, node_attestors={"x509pop": {"ca_bundle_path": str(bundle)}})
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    node_cert, node_key = _node_certificate(trusted, "node-1")
    impostor_cert, impostor_key = _node_certificate(_ca("someone else"), "node-1")
    agent, wrong_key, impostor = (
        MiniAgent(server.tls_port),
        MiniAgent(server.tls_port),
        MiniAgent(server.tls_port),
    )
    try:
        response = await attest_x509pop(agent, [node_cert], node_key)
        assert response.result.svid.spiffe_id.startswith(
            "spiffe://example.org/spire/agent/x509pop/"
        )
        node = await asyncio.to_thread(
            server.datastore.get_attested_node, response.result.svid.spiffe_id
        )
        assert "x509pop:subject:cn:node-1" in {f"{s.type}:{s.value}" for s in node.selectors}

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await attest_x509pop(wrong_key, [node_cert], ec.generate_private_key(ec.SECP256R1()))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not a signature by the certificate's key" in raised.value.details()

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await attest_x509pop(impostor, [impostor_cert], impostor_key)
        assert "does not chain to the configured CA bundle" in raised.value.details()
    finally:
        for client in (agent, wrong_key, impostor):
            await client.close()
        await server.stop()


async def test_attestation_rate_limit_per_address(tmp_path: Path) -> None:
    server = WardenServer(
        server_options(tmp_path, ratelimit_attestation=True), metrics=Metrics(CollectorRegistry())
    )
    await server.start()
    agents = [MiniAgent(server.tls_port) for _ in range(12)]
    try:
        outcomes = await asyncio.gather(
            *(a.attest_join_token("no-such-token-0000") for a in agents), return_exceptions=True
        )
        codes = {o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)}
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    finally:
        for agent in agents:
            await agent.close()
        await server.stop()


async def test_admin_ids_may_administer_over_mtls(tmp_path: Path) -> None:
    options = server_options(
        tmp_path, admin_ids=(SpiffeId.parse("spiffe://example.org/ops/admin"),)
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    admin = MiniAgent(server.tls_port)
    stranger = MiniAgent(server.tls_port)
    try:
        for client, spiffe_id in (
            (admin, "spiffe://example.org/ops/admin"),
            (stranger, "spiffe://example.org/web"),
        ):
            svid = await server.signing.mint_x509(spiffe_id, make_csr(client.key), 0, [], "test")
            client.chain = tuple(x509.load_der_x509_certificate(d) for d in svid.cert_chain)
            client.bundle = server.bundle
        await admin.connect()
        entries = admin_pb2_grpc.EntriesStub(admin.channel)
        count = await entries.CountEntries(admin_pb2.CountEntriesRequest())
        assert count.count == 0

        await stranger.connect()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await admin_pb2_grpc.EntriesStub(stranger.channel).CountEntries(
                admin_pb2.CountEntriesRequest()
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await admin.close()
        await stranger.close()
        await server.stop()


async def test_health_and_metrics_endpoints(tmp_path: Path) -> None:
    options = server_options(
        tmp_path,
        health_checks_enabled=True,
        health_bind_address="127.0.0.1",
        health_bind_port=0,
        prometheus_host="127.0.0.1",
        prometheus_port=0,
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    try:
        health, metrics = server._http
        async with httpx.AsyncClient() as client:
            live = await client.get(f"http://127.0.0.1:{health.port}/live")
            ready = await client.get(f"http://127.0.0.1:{health.port}/ready")
            scraped = await client.get(f"http://127.0.0.1:{metrics.port}/metrics")
        assert live.status_code == 200
        assert ready.status_code == 200
        assert json.loads(ready.text)["ready"] is True
        assert scraped.status_code == 200
        assert "spire_server_started" in scraped.text
        assert (
            'spire_server_rpc_warden_server_v1_server_status_get_status_total{status="OK"}'
            not in scraped.text
        )

        from warden.server.client import AdminClient

        with AdminClient(str(server.options.socket_path)) as admin:
            await asyncio.to_thread(admin.get_status)
        async with httpx.AsyncClient() as client:
            scraped = await client.get(f"http://127.0.0.1:{metrics.port}/metrics")
        assert (
            'spire_server_rpc_warden_server_v1_server_status_get_status_total{status="OK"} 1.0'
            in scraped.text
        )
    finally:
        await server.stop()


async def test_aws_iid_attests_each_instance_once(tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization as pem
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs7

    from warden.server.nodeattest.aws_iid import encode_payload as aws_payload

    region_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stand-in for AWS")])
    now = dt.datetime.now(dt.UTC)
    region_certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(region_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(region_key, hashes.SHA256())
    )
    certificates = tmp_path / "aws-certificates.json"
    certificates.write_text(
        json.dumps({"eu-west-1": region_certificate.public_bytes(pem.Encoding.PEM).decode()})
    )
    document = json.dumps(
        {
            "accountId": "123456789012",
            "availabilityZone": "eu-west-1a",
            "imageId": "ami-0abcdef1234567890",
            "instanceId": "i-0123456789abcdef0",
            "region": "eu-west-1",
        }
    ).encode()
    signature = base64.b64encode(
        pkcs7.PKCS7SignatureBuilder()
        .set_data(document)
        .add_signer(region_certificate, region_key, hashes.SHA256())
        .sign(pem.Encoding.DER, [pkcs7.PKCS7Options.NoCerts, pkcs7.PKCS7Options.Binary])
    ).decode()
    options = server_options(
        tmp_path, node_attestors={"aws_iid": {"region_certificates_path": str(certificates)}}
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    first, second = MiniAgent(server.tls_port), MiniAgent(server.tls_port)

    async def attest(agent: MiniAgent) -> agent_pb2.AttestAgentResponse:
        stub = await agent.connect()
        call = stub.AttestAgent()
        await call.write(
            agent_pb2.AttestAgentRequest(
                params=agent_pb2.AttestAgentRequest.Params(
                    data=agent_pb2.AttestationData(
                        type="aws_iid", payload=aws_payload(document, signature)
                    ),
                    csr=make_csr(agent.key),
                )
            )
        )
        return await call.read()

    try:
        response = await attest(first)
        assert response.result.svid.spiffe_id == (
            "spiffe://example.org/spire/agent/aws_iid/123456789012/eu-west-1/i-0123456789abcdef0"
        )
        assert not response.result.reattestable

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await attest(second)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "evict" in raised.value.details()
    finally:
        await first.close()
        await second.close()
        await server.stop()


async def test_disabled_jwt_svids_are_refused(tmp_path: Path) -> None:
    from warden.server.client import AdminClient, AdminError

    server = WardenServer(
        server_options(tmp_path, disable_jwt_svids=True), metrics=Metrics(CollectorRegistry())
    )
    await server.start()
    try:
        with (
            AdminClient(str(server.options.socket_path)) as client,
            pytest.raises(AdminError) as raised,
        ):
            await asyncio.to_thread(
                client.call,
                client.svids.MintJWTSVID,
                admin_pb2.MintJWTSVIDRequest(spiffe_id="spiffe://example.org/job", audience=["x"]),
            )
        assert "disable_jwt_svids" in str(raised.value)
    finally:
        await server.stop()


async def test_api_calls_logged_when_enabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from warden.server.client import AdminClient

    server = WardenServer(
        server_options(tmp_path, log_api_calls=True), metrics=Metrics(CollectorRegistry())
    )
    await server.start()
    try:
        with (
            caplog.at_level("INFO", logger="warden.server.api"),
            AdminClient(str(server.options.socket_path)) as client,
        ):
            await asyncio.to_thread(client.get_status)
        calls = [r for r in caplog.records if r.name == "warden.server.api"]
        assert calls
        assert calls[-1].method == "/warden.server.v1.ServerStatus/GetStatus"
        assert calls[-1].caller.startswith("local:uid=")
        assert calls[-1].status == "OK"
    finally:
        await server.stop()
