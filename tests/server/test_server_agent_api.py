"""The agent API end to end: attest with a join token, sync entries, get SVIDs signed."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from server_helpers import MiniAgent, make_csr

from warden.api.server.v1 import agent_pb2, types_pb2
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.spiffe import SpiffeId


def admin(server: WardenServer) -> AdminClient:
    return AdminClient(str(server.options.socket_path))


async def create_entry(server: WardenServer, **fields: object) -> types_pb2.Entry:
    entry = types_pb2.Entry(**fields)  # type: ignore[arg-type]
    with admin(server) as client:
        response = await asyncio.to_thread(client.create_entries, [entry])
    result = response.results[0]
    assert result.status.code == 0, result.status.message
    return result.entry


async def join(server: WardenServer, owner: str = "platform-team") -> MiniAgent:
    with admin(server) as client:
        token = await asyncio.to_thread(client.create_join_token, 600, owner)
    agent = MiniAgent(server.tls_port)
    await agent.attest_join_token(token.value)
    return agent


async def test_join_token_attestation_gives_agent_svid(server: WardenServer) -> None:
    agent = await join(server)
    try:
        leaf = agent.chain[0]
        uris = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
        assert uris[0].startswith("spiffe://example.org/spire/agent/join_token/")
        node = await asyncio.to_thread(server.datastore.get_attested_node, uris[0])
        assert node.owner == "platform-team"
    finally:
        await agent.close()


async def test_join_token_is_single_use(server: WardenServer) -> None:
    with admin(server) as client:
        token = await asyncio.to_thread(client.create_join_token, 600, "team")
    first = MiniAgent(server.tls_port)
    second = MiniAgent(server.tls_port)
    try:
        await first.attest_join_token(token.value)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await second.attest_join_token(token.value)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "already used" in raised.value.details()
    finally:
        await first.close()
        await second.close()


async def test_sync_streams_authorized_entries_and_changes(server: WardenServer) -> None:
    agent = await join(server)
    agent_id = (
        agent.chain[0]
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.UniformResourceIdentifier)[0]
    )
    try:
        mine = await create_entry(
            server,
            spiffe_id="spiffe://example.org/web",
            parent_id=agent_id,
            selectors=[types_pb2.Selector(type="unix", value="uid:1000")],
            owner="web-team",
        )
        await create_entry(
            server,
            spiffe_id="spiffe://example.org/other",
            parent_id="spiffe://example.org/spire/agent/join_token/someone-else",
            selectors=[types_pb2.Selector(type="unix", value="uid:1")],
            owner="other-team",
        )
        stub = await agent.connect()
        stream = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
        first = await asyncio.wait_for(stream.read(), 5)
        assert first.full
        assert [e.id for e in first.upserts] == [mine.id]
        assert first.bundle.spiffe_json

        added = await create_entry(
            server,
            spiffe_id="spiffe://example.org/db",
            parent_id=agent_id,
            selectors=[types_pb2.Selector(type="unix", value="uid:1001")],
            owner="db-team",
        )
        change = await asyncio.wait_for(stream.read(), 5)
        assert not change.full
        assert [e.id for e in change.upserts] == [added.id]

        with admin(server) as client:
            from warden.api.server.v1 import admin_pb2

            await asyncio.to_thread(
                client.call,
                client.entries.BatchDeleteEntry,
                admin_pb2.BatchDeleteEntryRequest(ids=[mine.id]),
            )
        removal = await asyncio.wait_for(stream.read(), 5)
        assert list(removal.deleted_entry_ids) == [mine.id]
        stream.cancel()
    finally:
        await agent.close()


async def test_csr_signed_only_for_authorized_entries(server: WardenServer, tmp_path: Path) -> None:
    agent = await join(server)
    agent_id = str(
        agent.chain[0]
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.UniformResourceIdentifier)[0]
    )
    try:
        mine = await create_entry(
            server,
            spiffe_id="spiffe://example.org/web",
            parent_id=agent_id,
            selectors=[types_pb2.Selector(type="unix", value="uid:1000")],
            owner="web-team",
        )
        foreign = await create_entry(
            server,
            spiffe_id="spiffe://example.org/payments",
            parent_id="spiffe://example.org/spire/agent/join_token/another-node",
            selectors=[types_pb2.Selector(type="unix", value="uid:1000")],
            owner="payments-team",
        )
        key = ec.generate_private_key(ec.SECP256R1())
        stub = await agent.connect()
        response = await stub.BatchNewX509SVID(
            agent_pb2.BatchNewX509SVIDRequest(
                params=[
                    agent_pb2.NewX509SVIDParams(entry_id=mine.id, csr=make_csr(key)),
                    agent_pb2.NewX509SVIDParams(entry_id=foreign.id, csr=make_csr(key)),
                ]
            )
        )
        ok, refused = response.results
        assert ok.status.code == 0
        assert ok.svid.spiffe_id == "spiffe://example.org/web"
        assert refused.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert not refused.svid.cert_chain

        leaf = tmp_path / "leaf.pem"
        bundle = tmp_path / "bundle.pem"
        leaf.write_bytes(
            x509.load_der_x509_certificate(ok.svid.cert_chain[0]).public_bytes(
                serialization.Encoding.PEM
            )
        )
        bundle.write_text(server.bundle.to_pem())
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(bundle), str(leaf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr

        records = list(server.datastore.iter_audit(action="svid.x509.sign"))
        assert [r.subject for r in records] == ["spiffe://example.org/web"]
        assert records[0].actor == agent_id
    finally:
        await agent.close()


async def test_calls_without_agent_svid_are_rejected(server: WardenServer) -> None:
    stranger = MiniAgent(server.tls_port)
    stranger.bundle = server.bundle
    try:
        stub = await stranger.connect()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.BatchNewX509SVID(agent_pb2.BatchNewX509SVIDRequest())
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await stranger.close()


async def test_evicted_agent_is_refused_with_reason(server: WardenServer) -> None:
    agent = await join(server)
    agent_id = str(
        agent.chain[0]
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.UniformResourceIdentifier)[0]
    )
    try:
        stub = await agent.connect()
        stream = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
        await asyncio.wait_for(stream.read(), 5)
        from warden.api.server.v1 import admin_pb2

        with admin(server) as client:
            await asyncio.to_thread(
                client.call,
                client.agents.EvictAgent,
                admin_pb2.EvictAgentRequest(spiffe_id=agent_id),
            )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(stream.read(), 5)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "evicted" in raised.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.RenewAgent(agent_pb2.RenewAgentRequest(csr=make_csr(agent.key)))
        assert "not attested" in again.value.details()
    finally:
        await agent.close()


async def test_agent_renewal_switches_serial(server: WardenServer) -> None:
    agent = await join(server)
    try:
        stub = await agent.connect()
        new_key = ec.generate_private_key(ec.SECP256R1())
        response = await stub.RenewAgent(agent_pb2.RenewAgentRequest(csr=make_csr(new_key)))
        agent.key = new_key
        agent.chain = tuple(x509.load_der_x509_certificate(d) for d in response.svid.cert_chain)
        stub = await agent.reconnect()
        stream = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
        first = await asyncio.wait_for(stream.read(), 5)
        assert first.full
        stream.cancel()
        spiffe_id = SpiffeId.parse(response.svid.spiffe_id)
        node = await asyncio.to_thread(server.datastore.get_attested_node, str(spiffe_id))
        assert node.serial_number == format(agent.chain[0].serial_number, "x")
    finally:
        await agent.close()
