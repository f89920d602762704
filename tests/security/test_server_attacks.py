"""Attacks on the Warden server, the server half of the identity plane.

Each test starts its own server on free loopback ports with its data under tmp_path, in this
event loop or as `warden server run` in its own process. It then attacks one surface: the
TLS listener, the agent API, the admin API, the datastore and its audit log, the
configuration loader, the CLI or the logs.

Each test marked `xfail(strict=True)` reproduces a problem the server still has, and its
reason names the problem. The others are attacks the server withstands, kept as regression
tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from attack_kit import (
    TRUST_DOMAIN,
    WARDEN,
    Agent,
    Clock,
    ServerProcess,
    admin,
    certificate,
    cli,
    create_entries,
    create_entry,
    entry,
    file_mode,
    join_token,
    joined_agent,
    make_csr,
    params,
    pem,
    running_server,
    uri_san,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from warden.api.server.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, types_pb2
from warden.config import ConfigError, load_server_config
from warden.logs import TextFormatter
from warden.server.client import AdminClient
from warden.server.main import verify_audit_log_offline
from warden.server.nodeattest.x509pop import encode_payload, sign_challenge
from warden.store import AuditEvent, Datastore
from warden.store.audit import canonical_record, chain_hash
from warden.store.roles import server_role_grants

SERVER_ID = f"spiffe://{TRUST_DOMAIN}/spire/server"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def rpc_error(awaitable: Any) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await awaitable
    return raised.value


async def next_message(stream: Any, seconds: float) -> Any | None:
    """The next message of a stream; None when the stream fails or nothing comes in time."""
    try:
        return await asyncio.wait_for(stream.read(), seconds)
    except (grpc.aio.AioRpcError, TimeoutError):
        return None


async def attest_call(agent: Agent, *requests: Any) -> Any:
    """Send raw AttestAgent messages, close the stream, and return the first response."""
    stub = await agent.stub()
    call = stub.AttestAgent()
    for request in requests:
        await call.write(request)
    await call.done_writing()
    return await asyncio.wait_for(call.read(), 10)


async def still_serves(server: Any) -> None:
    """Check that the admin socket still responds and that a new agent still attests."""
    status = await admin(server, "status.GetStatus", admin_pb2.GetStatusRequest())
    assert status.live
    assert status.ready
    agent = await joined_agent(server)
    await agent.close()


# == TLS listener: wrong identities ==========================================================


async def test_foreign_ca_client_cert_rejected(tmp_path: Path) -> None:
    """A certificate for this trust domain's agent ID, signed by a CA the server does not
    trust, does not get past the TLS handshake."""
    async with running_server(tmp_path) as server:
        genuine = await joined_agent(server)
        foreign_ca = certificate("foreign CA", ca=True)
        forged = certificate("forged", foreign_ca, uri=genuine.spiffe_id)
        impostor = Agent(
            server.tls_port,
            key=forged.key,
            chain=(forged.certificate, foreign_ca.certificate),
            bundle_pem=genuine.bundle_pem,
        )
        try:
            stub = await impostor.stub()
            error = await rpc_error(stub.SyncEntries(agent_pb2.SyncEntriesRequest()).read())
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            await still_serves(server)
        finally:
            await impostor.close()
            await genuine.close()


async def test_workload_svid_cannot_call_agent_api(tmp_path: Path) -> None:
    """An X509-SVID of this trust domain that is not a current agent SVID gets nothing."""
    async with running_server(tmp_path) as server:
        genuine = await joined_agent(server)
        key = ec.generate_private_key(ec.SECP256R1())
        minted = await admin(
            server,
            "svids.MintX509SVID",
            admin_pb2.MintX509SVIDRequest(
                spiffe_id=f"spiffe://{TRUST_DOMAIN}/web", csr=make_csr(key)
            ),
        )
        workload = Agent(
            server.tls_port,
            key=key,
            chain=tuple(x509.load_der_x509_certificate(d) for d in minted.svid.cert_chain),
            bundle_pem=genuine.bundle_pem,
        )
        try:
            stub = await workload.stub()
            error = await rpc_error(stub.SyncEntries(agent_pb2.SyncEntriesRequest()).read())
            assert error.code() == DENIED
            assert "not attested" in (error.details() or "")
            error = await rpc_error(
                stub.RenewAgent(agent_pb2.RenewAgentRequest(csr=make_csr(key)), timeout=10)
            )
            assert error.code() == DENIED
        finally:
            await workload.close()
            await genuine.close()


async def test_agent_api_needs_client_cert(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        genuine = await joined_agent(server)
        anonymous = Agent(server.tls_port, bundle_pem=genuine.bundle_pem)
        try:
            stub = await anonymous.stub()
            for call in (
                stub.SyncEntries(agent_pb2.SyncEntriesRequest()).read(),
                stub.BatchNewX509SVID(agent_pb2.BatchNewX509SVIDRequest(), timeout=10),
                stub.ReportDeliveries(agent_pb2.ReportDeliveriesRequest(), timeout=10),
            ):
                error = await rpc_error(call)
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await anonymous.close()
            await genuine.close()


async def test_agent_svid_cannot_administer_over_tls(tmp_path: Path) -> None:
    """Admin calls over mutual TLS need a SPIFFE ID in admin_ids or an admin entry."""
    async with running_server(tmp_path) as server:
        agent = await joined_agent(server)
        try:
            channel = agent.channel
            assert channel is not None
            entries = admin_pb2_grpc.EntriesStub(channel)
            error = await rpc_error(
                entries.BatchCreateEntry(
                    admin_pb2.BatchCreateEntryRequest(
                        entries=[entry(f"spiffe://{TRUST_DOMAIN}/x", agent.spiffe_id)]
                    ),
                    timeout=10,
                )
            )
            assert error.code() == DENIED
            assert "admin_ids" in (error.details() or "")
            agents = admin_pb2_grpc.AgentsStub(channel)
            error = await rpc_error(
                agents.CreateJoinToken(
                    admin_pb2.CreateJoinTokenRequest(ttl=600, owner="me"), timeout=10
                )
            )
            assert error.code() == DENIED
        finally:
            await agent.close()


async def test_evicted_and_banned_agents_rejected(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        evicted, banned = await joined_agent(server), await joined_agent(server)
        try:
            stream = (await evicted.stub()).SyncEntries(agent_pb2.SyncEntriesRequest())
            assert (await asyncio.wait_for(stream.read(), 10)).full
            await admin(
                server,
                "agents.EvictAgent",
                admin_pb2.EvictAgentRequest(spiffe_id=evicted.spiffe_id),
            )
            error = await rpc_error(asyncio.wait_for(stream.read(), 10))
            assert error.code() == DENIED
            assert "evicted" in (error.details() or "")
            error = await rpc_error(
                (await evicted.stub()).RenewAgent(
                    agent_pb2.RenewAgentRequest(csr=make_csr(evicted.key)), timeout=10
                )
            )
            assert error.code() == DENIED

            await admin(
                server, "agents.BanAgent", admin_pb2.BanAgentRequest(spiffe_id=banned.spiffe_id)
            )
            error = await rpc_error(
                (await banned.reconnect()).SyncEntries(agent_pb2.SyncEntriesRequest()).read()
            )
            assert error.code() == DENIED
            assert "banned" in (error.details() or "")
        finally:
            await evicted.close()
            await banned.close()


async def test_expired_agent_svid_fails_handshake(tmp_path: Path) -> None:
    async with running_server(tmp_path, agent_ttl=dt.timedelta(seconds=1)) as server:
        agent = await joined_agent(server)
        try:
            await asyncio.sleep(
                max(
                    0.0,
                    (agent.chain[0].not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds(),
                )
                + 1.2
            )
            stub = await agent.reconnect()
            error = await rpc_error(stub.SyncEntries(agent_pb2.SyncEntriesRequest()).read())
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await agent.close()


async def test_expired_agent_svid_on_open_connection(tmp_path: Path) -> None:
    async with running_server(tmp_path, agent_ttl=dt.timedelta(seconds=1)) as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            stub = await agent.stub()
            stream = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
            assert (await asyncio.wait_for(stream.read(), 10)).full
            expires = agent.chain[0].not_valid_after_utc
            await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.2)

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await agent.sign(workload.id)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "expired" in refused.value.details()
            await create_entry(server, f"spiffe://{TRUST_DOMAIN}/db", agent.spiffe_id)
            update = await next_message(stream, 3)
            assert update is None, f"an expired agent SVID still receives entries: {update}"
        finally:
            await agent.close()


# == Agent API: malformed attestation ========================================================


async def test_malformed_attestation_is_invalid_argument(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
        cases = {
            "no params first": [agent_pb2.AttestAgentRequest(challenge_response=b"x")],
            "empty stream": [],
            "unconfigured attestor": [params("k8s_psat", b"token", csr)],
            "empty attestor type": [params("", b"x", csr)],
            "non-ASCII token": [params("join_token", "jöin".encode(), csr)],
            "token of 129 characters": [params("join_token", b"a" * 129, csr)],
            "empty token": [params("join_token", b"", csr)],
            "token with a slash": [params("join_token", b"a/../../spire/server", csr)],
            "garbage CSR": [params("join_token", b"f" * 36, b"\x30\x03\x02\x01\x00")],
            "no CSR": [params("join_token", b"f" * 36, b"")],
            "15 MB of payload": [params("join_token", b"a" * (15 * 1024 * 1024), csr)],
            "15 MB CSR": [params("join_token", b"f" * 36, b"\x30\x84" + b"\x00" * (15 << 20))],
        }
        for name, requests in cases.items():
            agent = Agent(server.tls_port)
            try:
                error = await rpc_error(attest_call(agent, *requests))
                assert error.code() == INVALID, f"{name}: {error.code()} {error.details()}"
            finally:
                await agent.close()
        nodes = await admin(server, "agents.CountAgents", admin_pb2.CountAgentsRequest())
        assert nodes.count == 0
        await still_serves(server)


async def test_dot_segment_join_token_is_invalid_argument(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        agent = Agent(server.tls_port)
        try:
            csr = make_csr(agent.key)
            error = await rpc_error(attest_call(agent, params("join_token", b"..", csr)))
            assert error.code() == INVALID, f"{error.code()}: {error.details()}"
        finally:
            await agent.close()


async def test_guessed_join_tokens_are_rate_limited(tmp_path: Path) -> None:
    async with running_server(tmp_path, ratelimit_attestation=True) as server:
        codes = []
        for _ in range(14):
            agent = Agent(server.tls_port)
            try:
                guess = os.urandom(16).hex()
                error = await rpc_error(
                    attest_call(agent, params("join_token", guess.encode(), make_csr(agent.key)))
                )
                codes.append(error.code())
            finally:
                await agent.close()
        assert codes[0] == DENIED
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert codes.count(DENIED) <= 12


async def test_expired_join_token_rejected(tmp_path: Path) -> None:
    clock = Clock()
    async with running_server(tmp_path, clock=clock) as server:
        token = await join_token(server, ttl=60)
        clock.advance(61)
        agent = Agent(server.tls_port)
        try:
            error = await rpc_error(agent.attest_join_token(token))
            assert error.code() == DENIED
            assert "expired" in (error.details() or "")
            assert token not in (error.details() or "")
        finally:
            await agent.close()


async def test_concurrent_join_token_use_attests_once(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        token = await join_token(server)
        agents = [Agent(server.tls_port) for _ in range(8)]
        try:
            outcomes = await asyncio.gather(
                *(agent.attest_join_token(token) for agent in agents), return_exceptions=True
            )
            succeeded = [o for o in outcomes if not isinstance(o, BaseException)]
            failed = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
            assert len(succeeded) == 1
            assert len(failed) == 7
            assert {e.code() for e in failed} == {DENIED}
        finally:
            for agent in agents:
                await agent.close()


# == Agent API: signing ======================================================================


async def test_csr_batch_checked_per_item(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        agent, other = await joined_agent(server), await joined_agent(server)
        try:
            mine = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            theirs = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/db", other.spiffe_id)
            key = ec.generate_private_key(ec.SECP256R1())
            good_csr = make_csr(key)
            tampered = bytearray(good_csr)
            tampered[-5] ^= 0xFF
            # A weak key is the attack here.
            weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
            weak = make_csr(weak_key)
            batch = [
                (mine.id, good_csr),
                (theirs.id, good_csr),
                ("no-such-entry", good_csr),
                (mine.id, bytes(tampered)),
                (mine.id, weak),
                (mine.id, b"\x00" * 4096),
                ("", b""),
            ]
            stub = await agent.stub()
            response = await stub.BatchNewX509SVID(
                agent_pb2.BatchNewX509SVIDRequest(
                    params=[agent_pb2.NewX509SVIDParams(entry_id=i, csr=c) for i, c in batch]
                ),
                timeout=10,
            )
            codes = [r.status.code for r in response.results]
            assert codes[0] == 0
            assert codes[1:3] == [DENIED.value[0]] * 2
            assert codes[3:6] == [INVALID.value[0]] * 3
            assert codes[6] == DENIED.value[0]
            leaf = x509.load_der_x509_certificate(response.results[0].svid.cert_chain[0])
            assert uri_san(leaf) == f"spiffe://{TRUST_DOMAIN}/web"
            assert leaf.public_key() == key.public_key()

            error = await rpc_error(
                stub.BatchNewX509SVID(
                    agent_pb2.BatchNewX509SVIDRequest(
                        params=[agent_pb2.NewX509SVIDParams(entry_id=mine.id, csr=good_csr)] * 1001
                    ),
                    timeout=10,
                )
            )
            assert error.code() == INVALID
            signed = await admin(
                server,
                "audit.VerifyAuditLog",
                admin_pb2.VerifyAuditLogRequest(),
            )
            assert signed.ok
        finally:
            await agent.close()
            await other.close()


async def test_jwt_svid_request_checks_entry_and_audience(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        agent, other = await joined_agent(server), await joined_agent(server)
        try:
            mine = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            theirs = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/db", other.spiffe_id)
            stub = await agent.stub()
            error = await rpc_error(
                stub.NewJWTSVID(
                    agent_pb2.NewJWTSVIDRequest(entry_id=theirs.id, audience=["a"]), timeout=10
                )
            )
            assert error.code() == DENIED
            for audience in ([], [""], ["a", ""]):
                error = await rpc_error(
                    stub.NewJWTSVID(
                        agent_pb2.NewJWTSVIDRequest(entry_id=mine.id, audience=audience),
                        timeout=10,
                    )
                )
                assert error.code() == INVALID
        finally:
            await agent.close()
            await other.close()


# == Node attestation: x509pop and aws_iid ===================================================


def x509pop_server_options(tmp_path: Path, root: Any) -> dict[str, Any]:
    bundle = tmp_path / "node-ca.pem"
    bundle.write_bytes(pem(root.certificate))
    return {"node_attestors": {"x509pop": {"ca_bundle_path": str(bundle)}, "join_token": {}}}


async def test_x509pop_untrusted_chain_rejected(tmp_path: Path) -> None:
    root = certificate("node root", ca=True)
    async with running_server(tmp_path, **x509pop_server_options(tmp_path, root)) as server:
        stranger_root = certificate("stranger root", ca=True)
        stranger_leaf = certificate("node-1", stranger_root)
        # The stranger's chain carries the trusted root too, and a certificate that only
        # copies the trusted root's name.
        lookalike = certificate("node root", ca=True)
        lookalike_leaf = certificate("node-2", lookalike)
        not_a_ca = certificate("plain leaf", root)
        under_leaf = certificate("node-3", not_a_ca)
        cases = [
            (
                [stranger_leaf.certificate, stranger_root.certificate, root.certificate],
                stranger_leaf.key,
            ),
            ([lookalike_leaf.certificate, lookalike.certificate], lookalike_leaf.key),
            ([under_leaf.certificate, not_a_ca.certificate], under_leaf.key),
        ]
        for chain, key in cases:
            agent = Agent(server.tls_port)
            try:
                error = await rpc_error(agent.attest_x509pop(chain, key))
                assert error.code() == DENIED, error.details()
            finally:
                await agent.close()
        await still_serves(server)


async def test_x509pop_replayed_response_rejected(tmp_path: Path) -> None:
    """A response recorded in one attestation fails the challenge of the next."""
    root = certificate("node root", ca=True)
    node = certificate("node-1", root)
    async with running_server(tmp_path, **x509pop_server_options(tmp_path, root)) as server:
        recorded: list[bytes] = []
        first = Agent(server.tls_port)
        replayer = Agent(server.tls_port)
        try:
            stub = await first.stub()
            call = stub.AttestAgent()
            await call.write(
                params("x509pop", encode_payload([node.certificate]), make_csr(first.key))
            )
            challenge = (await call.read()).challenge
            recorded.append(sign_challenge(node.key, challenge))
            await call.write(agent_pb2.AttestAgentRequest(challenge_response=recorded[0]))
            assert (await call.read()).result.svid.spiffe_id

            stub = await replayer.stub()
            call = stub.AttestAgent()
            await call.write(
                params("x509pop", encode_payload([node.certificate]), make_csr(replayer.key))
            )
            assert (await call.read()).challenge != challenge
            await call.write(agent_pb2.AttestAgentRequest(challenge_response=recorded[0]))
            error = await rpc_error(call.read())
            assert error.code() == DENIED
            assert "not a signature" in (error.details() or "")
        finally:
            await first.close()
            await replayer.close()


async def test_x509pop_respects_path_length_constraint(tmp_path: Path) -> None:
    root = certificate("node root", ca=True)
    leaf_only_ca = certificate("team CA, leaves only", root, ca=True, path_length=0)
    rogue_ca = certificate("rogue sub-CA", leaf_only_ca, ca=True)
    node = certificate("rogue node", rogue_ca)
    async with running_server(tmp_path, **x509pop_server_options(tmp_path, root)) as server:
        agent = Agent(server.tls_port)
        try:
            chain = [node.certificate, rogue_ca.certificate, leaf_only_ca.certificate]
            error = await rpc_error(agent.attest_x509pop(chain, node.key))
            assert error.code() == DENIED
        finally:
            await agent.close()


def aws_region_ca(tmp_path: Path) -> tuple[dict[str, Any], x509.Certificate, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stand-in for AWS")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "aws-certificates.json"
    path.write_text(json.dumps({"eu-west-1": ca.public_bytes(serialization.Encoding.PEM).decode()}))
    options = {"node_attestors": {"aws_iid": {"region_certificates_path": str(path)}}}
    return options, ca, key


def identity_document(instance: str = "i-0123456789abcdef0") -> bytes:
    return json.dumps(
        {
            "accountId": "123456789012",
            "availabilityZone": "eu-west-1a",
            "imageId": "ami-0abcdef1234567890",
            "instanceId": instance,
            "region": "eu-west-1",
        },
        indent=2,
    ).encode()


def pkcs7_signature(content: bytes, ca: x509.Certificate, key: Any) -> bytes:
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(ca, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.NoCerts, pkcs7.PKCS7Options.Binary])
    )


def aws_payload(document: bytes, signature: bytes) -> bytes:
    return json.dumps(
        {"document": document.decode(), "rsa2048": base64.b64encode(signature).decode()}
    ).encode()


async def test_aws_iid_replayed_and_forged_documents_rejected(tmp_path: Path) -> None:
    options, ca, key = aws_region_ca(tmp_path)
    async with running_server(tmp_path, **options) as server:
        document = identity_document()
        signature = pkcs7_signature(document, ca, key)
        other = identity_document("i-0fffffffffffffff0")
        forger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cases = [
            # The instance's own document, attested a second time.
            (aws_payload(document, signature), DENIED),
            # Another instance's document carried by this one's signature.
            (aws_payload(other, signature), DENIED),
            # A document signed by a key that is not the region's.
            (aws_payload(other, pkcs7_signature(other, ca, forger_key)), DENIED),
            # The right signature with a byte of the document changed after signing.
            (aws_payload(document.replace(b"eu-west-1a", b"eu-west-1b"), signature), DENIED),
        ]
        first = Agent(server.tls_port)
        try:
            assert (await first.attest("aws_iid", aws_payload(document, signature))).svid.spiffe_id
        finally:
            await first.close()
        for payload, code in cases:
            agent = Agent(server.tls_port)
            try:
                error = await rpc_error(agent.attest("aws_iid", payload))
                assert error.code() == code, error.details()
            finally:
                await agent.close()


async def test_aws_iid_malformed_signature_is_invalid_argument(tmp_path: Path) -> None:
    options, ca, key = aws_region_ca(tmp_path)
    async with running_server(tmp_path, **options) as server:
        document = identity_document()
        signature = bytearray(pkcs7_signature(document, ca, key))
        # Break a digit of the signed attributes' signing time (an ASN.1 UTCTime).
        at = signature.index(b"\x17\x0d") + 3
        signature[at] = ord("x")
        agent = Agent(server.tls_port)
        try:
            error = await rpc_error(
                agent.attest("aws_iid", aws_payload(document, bytes(signature)))
            )
            assert error.code() == INVALID, f"{error.code()}: {error.details()}"
        finally:
            await agent.close()


# == Admin API: malformed input ==============================================================


async def audit_head(server: Any) -> tuple[int, str]:
    await server.audit.flush()
    return await asyncio.to_thread(server.datastore.audit_head)


async def test_malformed_entries_write_nothing(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        parent = f"spiffe://{TRUST_DOMAIN}/spire/agent/join_token/x"
        bad = [
            entry(f"spiffe://{TRUST_DOMAIN}/" + "a" * 3000, parent),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, owner=""),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, owner="   "),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, owner="a\x1b[2Jb"),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, description="\x00"),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, hint="x" * 5000),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, x509_svid_ttl=-1),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, jwt_svid_ttl=-(2**31)),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, selector="unix:uid:\x00"),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, selector="unix:" + "x" * 5000),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, selector=":"),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, selectors=[]),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, id="../../etc/passwd"),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, id="x" * 256),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, dns_names=["a b"]),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, dns_names=["x.example"] * 101),
            entry(f"spiffe://{TRUST_DOMAIN}/web", parent, federates_with=["Upper.org"]),
            entry(f"spiffe://{TRUST_DOMAIN}/web", f"spiffe://{TRUST_DOMAIN}/web"),
            entry("spiffe://Example.org/web", parent),
            entry(f"spiffe://{TRUST_DOMAIN}/web/../admin", parent),
            entry(f"spiffe://{TRUST_DOMAIN}/web?x=1", parent),
            entry("https://example.org/web", parent),
        ]
        head = await audit_head(server)
        results = await create_entries(server, *bad)
        for message, result in zip(bad, results, strict=True):
            assert result.status.code == INVALID.value[0], (message, result.status)
        count = await admin(server, "entries.CountEntries", admin_pb2.CountEntriesRequest())
        assert count.count == 0
        assert await audit_head(server) == head
        assert len(server.cache) == 0

        many = [types_pb2.Selector(type="unix", value=f"uid:{i}") for i in range(10_000)]
        (result,) = await create_entries(
            server, entry(f"spiffe://{TRUST_DOMAIN}/many", parent, selectors=many)
        )
        assert result.status.code == 0
        await still_serves(server)


async def test_unknown_ids_and_page_tokens_handled(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", SERVER_ID)
        with pytest.raises(grpc.RpcError) as raised:
            await admin(server, "entries.GetEntry", admin_pb2.GetEntryRequest(id="no-such-id"))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        for token in ("\x00", "zzzz", "' OR 1=1 --", "x" * 10_000):
            listed = await admin(
                server, "entries.ListEntries", admin_pb2.ListEntriesRequest(page_token=token)
            )
            assert len(listed.entries) <= 1
        deleted = await admin(
            server,
            "entries.BatchDeleteEntry",
            admin_pb2.BatchDeleteEntryRequest(ids=["no-such-id", "' OR 1=1 --", ""]),
        )
        assert {r.status.code for r in deleted.results} == {grpc.StatusCode.NOT_FOUND.value[0]}
        updated = await admin(
            server,
            "entries.BatchUpdateEntry",
            admin_pb2.BatchUpdateEntryRequest(
                entries=[entry(f"spiffe://{TRUST_DOMAIN}/web", SERVER_ID, id="no-such-id")]
            ),
        )
        assert updated.results[0].status.code == grpc.StatusCode.NOT_FOUND.value[0]
        count = await admin(server, "entries.CountEntries", admin_pb2.CountEntriesRequest())
        assert count.count == 1


async def test_out_of_range_times_are_invalid_argument(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        (result,) = await create_entries(
            server, entry(f"spiffe://{TRUST_DOMAIN}/web", SERVER_ID, expires_at=2**62)
        )
        assert result.status.code == INVALID.value[0]

        def listing() -> Any:
            with AdminClient(str(server.options.socket_path)) as client:
                return list(
                    client.audit.ListAuditRecords(
                        admin_pb2.ListAuditRecordsRequest(since=-(2**62)), timeout=10
                    )
                )

        with pytest.raises(grpc.RpcError) as raised:
            await asyncio.to_thread(listing)
        assert raised.value.code() == INVALID

        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/db", agent.spiffe_id)
            stub = await agent.stub()
            error = await rpc_error(
                stub.ReportDeliveries(
                    agent_pb2.ReportDeliveriesRequest(
                        deliveries=[agent_pb2.Delivery(entry_id=workload.id, delivered_at=-(2**62))]
                    ),
                    timeout=10,
                )
            )
            assert error.code() == INVALID
        finally:
            await agent.close()


# == Reserved SPIFFE IDs and join-token secrets ================================================


async def test_reserved_spire_namespace_rejected(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        parent = f"spiffe://{TRUST_DOMAIN}/spire/agent/join_token/x"
        for spiffe_id in (SERVER_ID, f"spiffe://{TRUST_DOMAIN}/spire/agent/join_token/other"):
            (result,) = await create_entries(server, entry(spiffe_id, parent))
            assert result.status.code == INVALID.value[0], f"entry {spiffe_id} was created"
        with pytest.raises(grpc.RpcError):
            await join_token(server, alias=SERVER_ID)
        key = ec.generate_private_key(ec.SECP256R1())
        with pytest.raises(grpc.RpcError):
            await admin(
                server,
                "svids.MintX509SVID",
                admin_pb2.MintX509SVIDRequest(spiffe_id=SERVER_ID, csr=make_csr(key)),
            )


async def test_foreign_trust_domain_entry_rejected(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        agent = await joined_agent(server)
        try:
            (result,) = await create_entries(
                server, entry("spiffe://other.org/web", agent.spiffe_id)
            )
            if result.status.code == 0:
                stub = await agent.stub()
                error = await rpc_error(
                    stub.NewJWTSVID(
                        agent_pb2.NewJWTSVIDRequest(entry_id=result.entry.id, audience=["a"]),
                        timeout=10,
                    )
                )
                assert error.code() != grpc.StatusCode.UNKNOWN, error.details()
            assert result.status.code == INVALID.value[0]
        finally:
            await agent.close()


async def test_server_id_alias_grants_nothing(tmp_path: Path) -> None:
    root = certificate("node root", ca=True)
    node = certificate("node-b", root)
    async with running_server(tmp_path, **x509pop_server_options(tmp_path, root)) as server:
        # Node B and its workload, reached through a node alias on B's x509pop selector.
        node_b = Agent(server.tls_port)
        await node_b.attest_x509pop([node.certificate], node.key)
        cluster = f"spiffe://{TRUST_DOMAIN}/cluster/prod"
        await create_entry(server, cluster, SERVER_ID, selector="x509pop:subject:cn:node-b")
        payments = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/payments", cluster)

        try:
            token = await join_token(server, alias=SERVER_ID)
        except grpc.RpcError:
            await node_b.close()
            return  # Refused: nothing below can happen.
        node_a = Agent(server.tls_port)
        try:
            await node_a.attest_join_token(token)
            stub = await node_a.stub()
            first = await asyncio.wait_for(
                stub.SyncEntries(agent_pb2.SyncEntriesRequest()).read(), 10
            )
            held_ids = {e.spiffe_id: e.id for e in first.upserts}
            assert payments.spiffe_id not in held_ids, "node A holds node B's workload entry"
            result = await node_a.sign(payments.id)
            assert result.status.code != 0, "node A got node B's workload SVID"
            if SERVER_ID in held_ids:
                result = await node_a.sign(held_ids[SERVER_ID])
                assert result.status.code != 0, "node A got an SVID for the server's own ID"
        finally:
            await node_a.close()
            await node_b.close()


async def test_unused_join_token_not_stored(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        token = await join_token(server, alias=f"spiffe://{TRUST_DOMAIN}/node/web-1")
        await server.audit.flush()
        database = server.options.data_dir / "datastore.sqlite3"
        connection = sqlite3.connect(database)
        try:
            tables = [
                r[0]
                for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            found = []
            for table in tables:
                for row in connection.execute(f'SELECT * FROM "{table}"'):  # noqa: S608
                    if any(isinstance(v, str) and token in v for v in row):
                        found.append(table)
        finally:
            connection.close()
        assert found == [], f"the unused token is readable in {sorted(set(found))}"


# == The audit log ==========================================================================

AUDIT_CONFIG = """
server {{
  trust_domain = "{trust_domain}"
  data_dir = "{data_dir}"
  socket_path = "{data_dir}/api.sock"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""


async def busy_datastore(tmp_path: Path) -> Path:
    """Run a server through attestation, entries and signing; return its stopped data_dir."""
    async with running_server(tmp_path / "origin") as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            assert (await agent.sign(workload.id)).status.code == 0
            await create_entry(server, f"spiffe://{TRUST_DOMAIN}/db", agent.spiffe_id)
        finally:
            await agent.close()
        return server.options.data_dir


def copy_datastore(data_dir: Path, into: Path) -> tuple[Path, sqlite3.Connection]:
    """Copy a stopped server's data_dir; return a config naming the copy and a connection."""
    copy = into / "data"
    shutil.copytree(data_dir, copy)
    config = into / "server.conf"
    config.write_text(AUDIT_CONFIG.format(trust_domain=TRUST_DOMAIN, data_dir=copy))
    return config, sqlite3.connect(copy / "datastore.sqlite3", isolation_level=None)


def verify_offline(*configs: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run `warden audit-log verify -config` on each configuration, in parallel."""
    processes = [
        subprocess.Popen(
            [*WARDEN, "audit-log", "verify", "-config", str(c), "-output", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in configs
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


TAMPERING = {
    "changed actor": "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3",
    "changed details": "UPDATE audit_log SET details = '{}' WHERE seq = 2",
    "deleted record": "DELETE FROM audit_log WHERE seq = 2",
    "reordered records": (
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; "
        "UPDATE audit_log SET seq = 2 WHERE seq = 3; "
        "UPDATE audit_log SET seq = 3 WHERE seq = -1"
    ),
    "truncated log": "DELETE FROM audit_log",
    "dropped tail": "DELETE FROM audit_log WHERE seq > 2",
}


async def test_audit_verify_detects_tampering_on_sqlite(tmp_path: Path) -> None:
    data_dir = await busy_datastore(tmp_path)
    configs = []
    intact, connection = copy_datastore(data_dir, tmp_path / "intact")
    connection.close()
    for index, statements in enumerate(TAMPERING.values()):
        config, connection = copy_datastore(data_dir, tmp_path / f"case-{index}")
        # Anyone who can write the file can drop the triggers first.
        connection.execute("DROP TRIGGER audit_log_no_update")
        connection.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements.split("; "):
            connection.execute(statement)
        connection.close()
        configs.append(config)

    # One case through the CLI as an operator runs it, all through the function it calls.
    results = verify_offline(intact, configs[-1])
    assert results[0].returncode == 0, results[0].stderr
    assert json.loads(results[0].stdout)["ok"]
    for result in results[1:]:
        assert result.returncode == 1, f"{result.stdout} {result.stderr}"
        assert json.loads(result.stdout)["problem"]
    for name, config in zip(TAMPERING, configs, strict=True):
        ok, _, problem, _ = verify_audit_log_offline(str(config))
        assert not ok, name
        assert problem, name


async def test_audit_triggers_block_update_and_delete(tmp_path: Path) -> None:
    data_dir = await busy_datastore(tmp_path)
    _, connection = copy_datastore(data_dir, tmp_path / "copy")
    try:
        for statement in (
            "UPDATE audit_log SET actor = 'x' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 1",
            "DELETE FROM audit_head",
            "UPDATE audit_head SET seq = seq - 1",
        ):
            with pytest.raises(sqlite3.DatabaseError):
                connection.execute(statement)
    finally:
        connection.close()


def rewrite_audit_record(connection: sqlite3.Connection, seq: int, actor: str) -> None:
    """Replace record `seq` with a new actor and re-chain every later record and the head,
    using only INSERT OR REPLACE and an UPDATE of the head's hash at the same sequence."""
    rows = connection.execute(
        "SELECT seq, recorded_at, actor, action, subject, details, server_id, prev_hash "
        "FROM audit_log WHERE seq >= ? ORDER BY seq",
        (seq,),
    ).fetchall()
    previous = rows[0][7]
    for number, recorded_at, old_actor, action, subject, details, server_id, _ in rows:
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=recorded_at)
        record_actor = actor if number == seq else old_actor
        record_hash = chain_hash(
            previous,
            canonical_record(
                number, moment, record_actor, action, subject, json.loads(details), server_id
            ),
        )
        connection.execute(
            "INSERT OR REPLACE INTO audit_log (seq, recorded_at, actor, action, subject, "
            "details, server_id, prev_hash, record_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                number,
                recorded_at,
                record_actor,
                action,
                subject,
                details,
                server_id,
                previous,
                record_hash,
            ),
        )
        previous = record_hash
    connection.execute("UPDATE audit_head SET record_hash = ? WHERE id = 1", (previous,))


async def test_audit_record_replace_blocked_on_sqlite(tmp_path: Path) -> None:
    data_dir = await busy_datastore(tmp_path)
    _, connection = copy_datastore(data_dir, tmp_path / "copy")
    try:
        row = connection.execute(
            "SELECT seq, recorded_at, actor, action, subject, details, server_id, prev_hash, "
            "record_hash FROM audit_log WHERE seq = 2"
        ).fetchone()
        with pytest.raises(sqlite3.DatabaseError):
            connection.execute(
                "INSERT OR REPLACE INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row[0], row[1], "someone-else", *row[3:]),
            )
    finally:
        connection.close()


async def test_audit_rewrite_with_recomputed_hashes_detected(tmp_path: Path) -> None:
    data_dir = await busy_datastore(tmp_path)
    config, connection = copy_datastore(data_dir, tmp_path / "copy")
    try:
        # The triggers refuse the rewrite itself: a record can only follow the last one.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            rewrite_audit_record(connection, 2, "someone-else")
        connection.rollback()
        triggers = {
            r[0]
            for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        assert "audit_log_no_delete" in triggers
    finally:
        connection.close()
    (result,) = verify_offline(config)
    assert result.returncode == 0, f"the untouched log no longer verifies: {result.stdout}"


@pytest.mark.postgres
async def test_audit_verify_detects_tampering_on_postgres(
    tmp_path: Path, postgres_cluster: Any, postgres_url: str
) -> None:
    """A superuser who bypasses the triggers still cannot hide a change, a removal, a
    reordering or a TRUNCATE from verification."""
    async with running_server(
        tmp_path, datastore=postgres_url, datastore_type="postgres"
    ) as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            assert (await agent.sign(workload.id)).status.code == 0
        finally:
            await agent.close()
    template = postgres_url.rsplit("/", 1)[1]
    cases = {**TAMPERING, "TRUNCATE": "TRUNCATE audit_log"}
    for name, statements in cases.items():
        url = postgres_cluster.create_database(template=template)
        with postgres_cluster.connect(url.rsplit("/", 1)[1]) as connection:
            connection.execute("SET session_replication_role = replica")
            for statement in statements.split("; "):
                connection.execute(statement.replace("seq = -1", "seq = 1000000"))
        with Datastore.open(url, migrate=False) as store:
            result = store.verify_audit_log()
        assert not result.ok, name
        assert result.problem, name


@pytest.mark.postgres
async def test_restricted_role_cannot_rewrite_audit(
    tmp_path: Path, postgres_cluster: Any, postgres_url: str
) -> None:
    """The restricted role the docs recommend can neither upsert over a record nor give the
    chain head another hash at the same sequence number."""
    Datastore.open(postgres_url).close()
    database = postgres_url.rsplit("/", 1)[1]
    role = f"attacker_{database[-8:]}"
    postgres_cluster.create_role(role)
    with postgres_cluster.connect(database) as owner:
        for statement in server_role_grants(role):
            owner.execute(statement)
    restricted = postgres_cluster.url(database, user=role)
    with Datastore.open(restricted, migrate=False, server_id="s") as store:
        store.append_audit(
            [AuditEvent(action="entry.create", actor="alice", subject=f"r{i}") for i in range(3)]
        )
    with (
        postgres_cluster.connect(database, user=role) as connection,
        pytest.raises(psycopg.errors.Error),
    ):
        connection.execute(
            "INSERT INTO audit_log SELECT * FROM audit_log WHERE seq = 2 "
            "ON CONFLICT (seq) DO UPDATE SET actor = 'mallory'"
        )
    with (
        postgres_cluster.connect(database, user=role) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="only move forward"),
    ):
        connection.execute("UPDATE audit_head SET record_hash = repeat('0', 64) WHERE id = 1")
    with Datastore.open(postgres_url, migrate=False) as store:
        result = store.verify_audit_log()
    assert result.ok


# == CLI output and input files =============================================================


async def run_cli(server: Any, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `warden <arguments> -socketPath <server>` without blocking the server's loop."""
    return await asyncio.to_thread(cli, *arguments, "-socketPath", str(server.options.socket_path))


async def test_cli_tables_print_stored_strings_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that no cell wraps, so the strings can be found whole.
    monkeypatch.setenv("COLUMNS", "400")
    async with running_server(tmp_path) as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(
                server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id, owner="[/team]"
            )
            stub = await agent.stub()
            for audience in ("[/evil]", "\x1b]0;pwned\x07https://api"):
                await stub.NewJWTSVID(
                    agent_pb2.NewJWTSVIDRequest(entry_id=workload.id, audience=[audience]),
                    timeout=10,
                )
            listed = await run_cli(server, "audit-log", "list", "-action", "svid.jwt.sign")
            entries_table = await run_cli(server, "entry", "show")
        finally:
            await agent.close()
    assert listed.returncode == 0, listed.stderr[-500:]
    assert "[/evil]" in listed.stdout
    assert "\x1b]0;" not in listed.stdout
    assert entries_table.returncode == 0, entries_table.stderr[-500:]
    assert "[/team]" in entries_table.stdout


async def test_join_token_owner_control_characters_rejected(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        with pytest.raises(grpc.RpcError) as raised:
            await admin(
                server,
                "agents.CreateJoinToken",
                admin_pb2.CreateJoinTokenRequest(ttl=600, owner="ops\x1b]0;pwned\x07"),
            )
        assert raised.value.code() == INVALID


async def test_entry_data_file_parsed_strictly(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        document = {
            "entries": [
                {
                    "spiffe_id": f"spiffe://{TRUST_DOMAIN}/web",
                    "parent_id": SERVER_ID,
                    "selectors": ["unix:uid:1000"],
                    "owner": "web-team",
                    "admin": "false",
                    "downstream": "false",
                }
            ]
        }
        data = tmp_path / "entries.json"
        data.write_text(json.dumps(document))
        await run_cli(server, "entry", "create", "-data", str(data), "-output", "json")
        listed = await admin(server, "entries.ListEntries", admin_pb2.ListEntriesRequest())
        for created in listed.entries:
            assert not created.admin, "a string 'false' made an admin entry"
            assert not created.downstream

        document["entries"][0] |= {"admin": False, "x509_svid_ttl": "1h", "downstream": False}
        data.write_text(json.dumps(document))
        result = await run_cli(server, "entry", "create", "-data", str(data))
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "x509_svid_ttl" in result.stderr


# == Secrets: logs and file modes =============================================================


def test_logs_and_key_files_keep_secrets(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, log_level="debug", log_format="json")
    server.start()
    try:
        unused = server.cli("token", "generate", "-owner", "team", "-output", "json")
        assert unused.returncode == 0, unused.stderr
        unused_token = json.loads(unused.stdout)["value"]
        aliased = server.cli(
            "token",
            "generate",
            "-owner",
            "team",
            "-output",
            "json",
            "-spiffeID",
            f"spiffe://{TRUST_DOMAIN}/node/web-1",
        )
        assert aliased.returncode == 0, aliased.stderr
        used = json.loads(
            server.cli("token", "generate", "-owner", "team", "-output", "json").stdout
        )["value"]

        async def attest() -> None:
            agent = Agent(server.tls_port())
            try:
                await agent.attest_join_token(used)
                await agent.attest_join_token(used)
            except grpc.aio.AioRpcError:
                pass
            finally:
                await agent.close()

        asyncio.run(attest())
        minted = server.cli(
            "x509",
            "mint",
            "-spiffeID",
            f"spiffe://{TRUST_DOMAIN}/tool",
            "-write",
            str(tmp_path / "svid"),
        )
        assert minted.returncode == 0, minted.stderr
        jwt = server.cli(
            "jwt",
            "mint",
            "-spiffeID",
            f"spiffe://{TRUST_DOMAIN}/tool",
            "-audience",
            "https://api",
        )
        assert jwt.returncode == 0, jwt.stderr
        token = jwt.stdout.strip()
    finally:
        server.stop()

    log = server.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert lines, "the server wrote no JSON log lines"
    assert "PRIVATE KEY" not in log
    assert unused_token not in log
    assert token not in log
    assert token.split(".")[2] not in log
    assert "agent attested" in log

    assert file_mode(tmp_path / "svid" / "key.pem") == 0o600
    assert file_mode(server.data_dir) == 0o700
    assert file_mode(server.socket.parent) == 0o700
    private = [
        p for p in server.data_dir.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    ]
    assert private, "the disk key manager wrote no key file"
    for path in private:
        assert file_mode(path) == 0o600, path
    assert file_mode(server.data_dir / "datastore.sqlite3") & 0o077 == 0


def test_failed_start_keeps_database_password_out_of_output(tmp_path: Path) -> None:
    """A server that cannot reach its PostgreSQL reports it without printing the password."""
    password = "Sup3r-secret-" + os.urandom(4).hex()
    unreachable = socket.socket()
    unreachable.bind(("127.0.0.1", 0))
    port = unreachable.getsockname()[1]
    unreachable.close()
    outputs = []
    for connection in (
        f"postgresql://warden:{password}@127.0.0.1:{port}/warden",
        f"host=127.0.0.1 port={port} user=warden password={password} dbname=warden",
    ):
        config = tmp_path / "server.conf"
        config.write_text(
            BASE_CONFIG.format(data_dir=tmp_path / "data").replace(
                "plugins {",
                'plugins {\n  DataStore "sql" {\n    plugin_data {\n'
                f'      database_type = "postgres"\n      connection_string = "{connection}"\n'
                "    }\n  }",
            )
        )
        result = cli("server", "run", "-config", str(config))
        assert result.returncode == 1
        outputs.append(result.stdout + result.stderr)
    for output in outputs:
        assert "database" in output
        assert password not in output


# == Killed processes ========================================================================


def test_kill_during_writes_keeps_datastore_consistent(tmp_path: Path) -> None:
    """Kill the server (SIGKILL) while entries are created and join tokens consumed.

    After a restart the audit chain verifies, every entry and agent has its audit record,
    and the server attests a new agent.
    """
    server = ServerProcess(tmp_path)
    server.start()
    port = server.tls_port()
    stop = threading.Event()
    created: list[str] = []

    def create_entries_forever() -> None:
        with AdminClient(str(server.socket), timeout=5) as client:
            batch = 0
            while not stop.is_set():
                batch += 1
                entries = [
                    entry(f"spiffe://{TRUST_DOMAIN}/w/{batch}/{i}", SERVER_ID, f"unix:uid:{i}")
                    for i in range(20)
                ]
                try:
                    response = client.create_entries(entries)
                except Exception:
                    return
                created.extend(r.entry.id for r in response.results if r.status.code == 0)

    def attest_forever() -> None:
        async def loop() -> None:
            while not stop.is_set():
                try:
                    with AdminClient(str(server.socket), timeout=5) as client:
                        token = client.create_join_token(600, "team").value
                    agent = Agent(port)
                    try:
                        await agent.attest_join_token(token)
                    finally:
                        await agent.close()
                except Exception:
                    return

        asyncio.run(loop())

    workers = [
        threading.Thread(target=create_entries_forever),
        threading.Thread(target=attest_forever),
    ]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    server.kill()
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    assert created, "no entry was created before the kill"

    ok, records, problem, _ = verify_audit_log_offline(str(server.config))
    assert ok, problem

    server.start()
    try:
        with Datastore.open(server.data_dir / "datastore.sqlite3", migrate=False) as store:
            entry_ids = {e.id for e in store.iter_all_entries()}
            audited_entries = {
                r.details["entry_id"] for r in store.iter_audit(action="entry.create")
            }
            nodes = {n.spiffe_id for n in store.list_attested_nodes()}
            audited_nodes = {r.subject for r in store.iter_audit(action="agent.attest")}
        assert set(created) <= entry_ids, "an entry acknowledged before the kill is missing"
        assert entry_ids == audited_entries
        assert nodes == audited_nodes
        assert records > len(entry_ids)

        result = server.cli("audit-log", "verify")
        assert result.returncode == 0, result.stdout + result.stderr
        with AdminClient(str(server.socket), timeout=10) as client:
            token = client.create_join_token(600, "team").value

        async def attest() -> None:
            agent = Agent(server.tls_port())
            try:
                await agent.attest_join_token(token)
            finally:
                await agent.close()

        asyncio.run(attest())
    finally:
        server.stop()


async def test_signing_pool_recovers_from_killed_worker(tmp_path: Path) -> None:
    async with running_server(tmp_path, signing_workers=2, ratelimit_signing=False) as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
            request = agent_pb2.BatchNewX509SVIDRequest(
                params=[agent_pb2.NewX509SVIDParams(entry_id=workload.id, csr=csr)] * 32
            )
            stub = await agent.stub()
            first = await stub.BatchNewX509SVID(request, timeout=60)
            assert all(r.status.code == 0 for r in first.results)

            executor = server.signing_pool._executor
            assert executor is not None
            os.kill(next(iter(executor._processes)), signal.SIGKILL)
            await asyncio.sleep(0.5)
            outcomes = []
            for _ in range(3):
                try:
                    response = await stub.BatchNewX509SVID(request, timeout=60)
                    outcomes.append(all(r.status.code == 0 for r in response.results))
                except grpc.aio.AioRpcError as error:
                    outcomes.append(error.code())
            assert outcomes[-1] is True, f"batches after the worker died: {outcomes}"
        finally:
            await agent.close()


async def test_stop_removes_private_directories(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        serial = server._server_chain[0].serial_number
    leftovers = []
    for path in Path("/tmp").glob("warden-server-*/server-svid.pem"):
        with contextlib.suppress(OSError, ValueError):
            if x509.load_pem_x509_certificate(path.read_bytes()).serial_number == serial:
                leftovers.append(path.parent)
    assert leftovers == []


# == Resource exhaustion on the listeners ===================================================

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = bytes.fromhex("000000040000000000")


def closed_by_peer(connection: socket.socket) -> bool:
    """Tell whether the server closed (or reset) a connection within five seconds."""
    connection.settimeout(5)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def anonymous_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


async def test_unfinished_handshakes_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("warden.server.transport.HANDSHAKE_TIMEOUT_SECONDS", 0.5)
    async with running_server(tmp_path) as server:
        silent = []
        for _ in range(50):
            connection = socket.create_connection(("127.0.0.1", server.tls_port))
            silent.append(connection)
        # A client that starts a handshake and stops after a few bytes of its ClientHello.
        stalled = socket.create_connection(("127.0.0.1", server.tls_port))
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        silent.append(stalled)
        try:
            await still_serves(server)
            await asyncio.sleep(1.5)
            for connection in silent:
                assert closed_by_peer(connection)
        finally:
            for connection in silent:
                connection.close()
        assert len(server.peers) == 0


async def test_garbage_and_oversized_frames_survived(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        port = server.tls_port
        # Not TLS at all.
        for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096), b"\x00" * 65536):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage)
            await writer.drain()
            await asyncio.wait_for(reader.read(), 15)
            writer.close()
        # TLS without a client certificate, then HTTP/2 abuse: a DATA frame announcing the
        # largest frame size on a stream never opened, a HEADERS frame of garbage, and noise.
        frames = [
            HTTP2_PREFACE + EMPTY_SETTINGS + bytes.fromhex("ffffff0000000000") + b"\x01",
            HTTP2_PREFACE
            + EMPTY_SETTINGS
            + bytes.fromhex("0040000105")
            + b"\x00\x00\x00\x01"
            + os.urandom(16384),
            os.urandom(100_000),
        ]
        for payload in frames:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=anonymous_tls_context()
            )
            writer.write(payload)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.drain()
                await asyncio.wait_for(reader.read(), 15)
            writer.close()
        await still_serves(server)


def test_idle_anonymous_connections_capped(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, open_files_limit=256)
    server.start()
    try:
        port = server.tls_port()

        async def hold(count: int) -> bool:
            writers = []
            try:
                for _ in range(count):
                    try:
                        _, writer = await asyncio.wait_for(
                            asyncio.open_connection("127.0.0.1", port, ssl=anonymous_tls_context()),
                            5,
                        )
                    except (OSError, TimeoutError):
                        break
                    writer.write(HTTP2_PREFACE + EMPTY_SETTINGS)
                    writers.append(writer)
                await asyncio.sleep(1)
                return await asyncio.to_thread(server.healthy)
            finally:
                for writer in writers:
                    writer.close()

        assert asyncio.run(hold(120)), "the admin socket stopped responding"
    finally:
        server.stop()


# == Configuration files =====================================================================

BASE_CONFIG = """server {{
  bind_address = "127.0.0.1"
  bind_port = "0"
  trust_domain = "example.org"
  data_dir = "{data_dir}"
  socket_path = "{data_dir}/api.sock"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""


def config_problem(tmp_path: Path, text: str, expand_env: bool = False) -> str:
    """Load a server configuration that must be rejected; return the error message."""
    path = tmp_path / "server.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_server_config(path, expand_env=expand_env)
    return str(raised.value)


def test_hostile_config_files_give_clear_errors(tmp_path: Path) -> None:
    base = BASE_CONFIG.format(data_dir=tmp_path / "data")
    server_block = base.split("plugins")[0]
    cases = {
        "server block twice": (
            base + server_block.replace("example.org", "evil.org"),
            "more than once",
        ),
        "trust_domain twice": (
            base.replace(
                'trust_domain = "example.org"',
                'trust_domain = "example.org"\n  trust_domain = "evil.org"',
            ),
            "more than once",
        ),
        "attestor twice": (
            base.replace("plugins {", 'plugins {\n  NodeAttestor "join_token" { plugin_data {} }'),
            "more than once",
        ),
        "200 kB of trust domain": (
            base.replace('"example.org"', '"' + "a" * 200_000 + '"'),
            "trust_domain",
        ),
        "NUL in a value": (base.replace("example.org", "example\x00.org"), "trust_domain"),
        "unsupported KeyManager": (
            base.replace("plugins {", 'plugins {\n  KeyManager "aws_kms" { plugin_data {} }'),
            "aws_kms",
        ),
        "negative TTL": (
            base.replace("trust_domain", 'default_x509_svid_ttl = "-1h"\n  trust_domain'),
            "default_x509_svid_ttl",
        ),
        "port out of range": (base.replace('"0"', '"65536"'), "bind_port"),
        "typo in a key": (base.replace("trust_domain", "trust_domian"), "trust_domian"),
        "deep list": (
            base.replace('bind_port = "0"', "bind_port = " + "[" * 2000 + "]" * 2000),
            ":3:",
        ),
    }
    for name, (text, expected) in cases.items():
        assert expected in config_problem(tmp_path, text), name


def test_unterminated_config_string_is_config_error(tmp_path: Path) -> None:
    text = 'server {\n  trust_domain = "example.org\n  data_dir = "/var/lib/warden"\n}\n'
    assert "line" in config_problem(tmp_path, text) or "2" in config_problem(tmp_path, text)


def test_deeply_nested_config_is_config_error(tmp_path: Path) -> None:
    base = BASE_CONFIG.format(data_dir=tmp_path / "data")
    nested = "health_checks " + "{ a " * 1000 + "= 1" + " }" * 1000 + "\n"
    assert "health_checks" in config_problem(tmp_path, base + nested)


# == Logs ==================================================================================


async def test_agent_input_cannot_forge_log_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("warden")
    logger.addHandler(handler)
    try:
        async with running_server(tmp_path) as server:
            agent = await joined_agent(server)
            try:
                forged = "x\n2030-01-01T00:00:00.000Z\tINFO\twarden.server.app:\tagent\tevicted"
                result = await agent.sign(forged)
                assert result.status.code == DENIED.value[0]
            finally:
                await agent.close()
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("2030-01-01") for line in lines), "a log line was forged"


# == Audit records of JWT-SVIDs ==============================================================


async def test_jwt_svid_expiry_reported_as_signed(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        response = await admin(
            server,
            "svids.MintJWTSVID",
            admin_pb2.MintJWTSVIDRequest(
                spiffe_id=f"spiffe://{TRUST_DOMAIN}/tool", audience=["a"], ttl=2**31 - 1
            ),
        )
        payload = response.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        await server.audit.flush()
        (record,) = list(server.datastore.iter_audit(action="svid.jwt.mint"))
        assert record.details["expires_at"] == claims["exp"]
        assert response.expires_at == claims["exp"]


@pytest.mark.postgres
async def test_eviction_closes_streams_on_other_server(tmp_path: Path, postgres_url: str) -> None:
    shared = {"datastore": postgres_url, "datastore_type": "postgres"}
    async with (
        running_server(tmp_path / "a", **shared) as first,
        running_server(tmp_path / "b", **shared) as second,
    ):
        agent = await joined_agent(second)
        try:
            stream = (await agent.stub()).SyncEntries(agent_pb2.SyncEntriesRequest())
            assert (await asyncio.wait_for(stream.read(), 10)).full
            await admin(
                first, "agents.EvictAgent", admin_pb2.EvictAgentRequest(spiffe_id=agent.spiffe_id)
            )
            await asyncio.sleep(1.5)
            # Signing on the second server already stops (its node cache lasts a second).
            denied = await create_entry(first, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            error = await rpc_error(agent.sign(denied.id))
            assert error.code() == DENIED
            update = await next_message(stream, 5)
            assert update is None, f"the evicted agent still receives entries: {update}"
        finally:
            await agent.close()


# == Files the server touches ==================================================================


async def test_admin_socket_spares_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 - a shared socket directory, as /tmp is
    victim = shared / "api.sock"
    victim.write_text("not a socket\n")
    with contextlib.suppress(Exception):
        async with running_server(tmp_path, socket_path=victim):
            pass
    assert file_mode(shared) == 0o777
    assert os.stat(shared).st_mode & 0o1000
    assert victim.read_text() == "not a socket\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
async def test_admin_socket_directory_owned_by_other_user_rejected(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    squatted = tmp_path / "spire-server" / "private"
    squatted.mkdir(parents=True)
    for directory in (squatted.parent, squatted):
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    owner = None
    with contextlib.suppress(Exception):
        async with running_server(tmp_path, socket_path=squatted / "api.sock"):
            owner = os.stat(squatted).st_uid
    assert owner in (None, os.geteuid()), "the server listens in a directory another user owns"


async def test_jwt_audience_size_is_bounded(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        agent = await joined_agent(server)
        try:
            workload = await create_entry(server, f"spiffe://{TRUST_DOMAIN}/web", agent.spiffe_id)
            stub = await agent.stub()
            error = await rpc_error(
                stub.NewJWTSVID(
                    agent_pb2.NewJWTSVIDRequest(entry_id=workload.id, audience=["a" * 1000] * 1000),
                    timeout=30,
                )
            )
            assert error.code() == INVALID
        finally:
            await agent.close()


async def test_audit_listing_reads_only_what_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_server(tmp_path) as server:
        events = [
            AuditEvent(
                action="svid.x509.sign", actor="agent", subject=f"spiffe://{TRUST_DOMAIN}/w{i}"
            )
            for i in range(2000)
        ]
        await asyncio.to_thread(server.datastore.append_audit, events)
        read = 0
        original = server.datastore.iter_audit

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal read
            for record in original(*args, **kwargs):
                read += 1
                yield record

        monkeypatch.setattr(server.datastore, "iter_audit", counting)

        def listing() -> list[Any]:
            with AdminClient(str(server.options.socket_path)) as client:
                request = admin_pb2.ListAuditRecordsRequest(limit=10)
                return list(client.audit.ListAuditRecords(request, timeout=30))

        records = await asyncio.to_thread(listing)
        assert len(records) == 10
        assert read <= 100, f"{read} records read to return 10"
