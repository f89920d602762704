"""Two servers sharing one PostgreSQL database, as in a highly available deployment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry
from server_helpers import MiniAgent, make_csr, server_options

from warden.api.server.v1 import admin_pb2, agent_pb2, types_pb2
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.server.metrics import Metrics
from warden.spiffe import validate_x509_svid

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_servers(
    tmp_path: Path, postgres_url: str
) -> AsyncIterator[tuple[WardenServer, WardenServer]]:
    servers = []
    for name in ("a", "b"):
        options = server_options(tmp_path / name, datastore=postgres_url, datastore_type="postgres")
        server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
        await server.start()
        servers.append(server)
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            await server.stop()


def agent_id_of(agent: MiniAgent) -> str:
    san = agent.chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(san.get_values_for_type(x509.UniformResourceIdentifier)[0])


async def test_svids_of_both_servers_verify_against_shared_bundle(two_servers) -> None:
    first, second = two_servers
    await first._refresh_bundle(force=True)
    await second._refresh_bundle(force=True)
    now = first.clock()

    for signer in (first, second):
        key = ec.generate_private_key(ec.SECP256R1())
        svid = await signer.signing.mint_x509(
            "spiffe://example.org/job", make_csr(key), 0, [], "test"
        )
        chain = [x509.load_der_x509_certificate(der) for der in svid.cert_chain]
        for verifier in (first, second):
            assert (
                str(validate_x509_svid(chain, verifier.bundle, now)) == "spiffe://example.org/job"
            )

    assert first.bundle.x509_authorities == second.bundle.x509_authorities
    assert len(first.bundle.x509_authorities) == 2


async def test_entry_created_on_one_server_reaches_agent_on_the_other(two_servers) -> None:
    first, second = two_servers
    with AdminClient(str(second.options.socket_path)) as client:
        token = await asyncio.to_thread(client.create_join_token, 600, "ops")
    agent = MiniAgent(second.tls_port)
    try:
        await agent.attest_join_token(token.value)
        stub = await agent.connect()
        stream = stub.SyncEntries(agent_pb2.SyncEntriesRequest())
        initial = await asyncio.wait_for(stream.read(), 5)
        assert list(initial.upserts) == []

        entry = types_pb2.Entry(
            spiffe_id="spiffe://example.org/web",
            parent_id=agent_id_of(agent),
            selectors=[types_pb2.Selector(type="unix", value="uid:1000")],
            owner="web-team",
        )
        with AdminClient(str(first.options.socket_path)) as client:
            created = await asyncio.to_thread(client.create_entries, [entry])
        assert created.results[0].status.code == 0

        change = await asyncio.wait_for(stream.read(), 10)
        assert [e.spiffe_id for e in change.upserts] == ["spiffe://example.org/web"]

        # The agent signs through the server it is connected to.
        key = ec.generate_private_key(ec.SECP256R1())
        signed = await stub.BatchNewX509SVID(
            agent_pb2.BatchNewX509SVIDRequest(
                params=[
                    agent_pb2.NewX509SVIDParams(
                        entry_id=created.results[0].entry.id, csr=make_csr(key)
                    )
                ]
            )
        )
        assert signed.results[0].status.code == 0

        with AdminClient(str(first.options.socket_path)) as client:
            await asyncio.to_thread(
                client.call,
                client.entries.BatchDeleteEntry,
                admin_pb2.BatchDeleteEntryRequest(ids=[created.results[0].entry.id]),
            )
        removal = await asyncio.wait_for(stream.read(), 10)
        assert list(removal.deleted_entry_ids) == [created.results[0].entry.id]
        stream.cancel()
    finally:
        await agent.close()


async def test_join_token_presented_to_both_servers_is_accepted_once(two_servers) -> None:
    first, second = two_servers
    with AdminClient(str(first.options.socket_path)) as client:
        token = await asyncio.to_thread(client.create_join_token, 600, "ops")
    agents = [MiniAgent(first.tls_port), MiniAgent(second.tls_port)]
    try:
        outcomes = await asyncio.gather(
            *(agent.attest_join_token(token.value) for agent in agents), return_exceptions=True
        )
        successes = [o for o in outcomes if not isinstance(o, BaseException)]
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(successes) == 1
        assert len(failures) == 1
        assert isinstance(failures[0], grpc.aio.AioRpcError)
        assert failures[0].code() == grpc.StatusCode.PERMISSION_DENIED
        assert "already used" in failures[0].details()
    finally:
        for agent in agents:
            await agent.close()
