"""Warden's Workload API client and sources against a running agent.

The client is synchronous and the agent runs on this test's event loop, so every client
call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from agent_support import RunningAgent, make_entry, public_socket_dir, running_agent

from warden.mtls import (
    EndpointAddressError,
    JwtSource,
    WorkloadApiClient,
    WorkloadApiError,
    X509Context,
    X509Source,
    pick_by_hint,
)
from warden.mtls.address import grpc_target, resolve_address
from warden.spiffe import SpiffeId, TrustDomain, validate_jwt_svid

UID = os.geteuid()


@pytest.fixture
async def agent() -> AsyncIterator[RunningAgent]:
    directory = public_socket_dir()
    try:
        async with running_agent(directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def client(agent: RunningAgent) -> AsyncIterator[WorkloadApiClient]:
    client = WorkloadApiClient(f"unix://{agent.socket_path}", timeout=10)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("unix:///run/agent/api.sock", "unix:/run/agent/api.sock"),
        ("/run/agent/api.sock", "unix:/run/agent/api.sock"),
        ("tcp://127.0.0.1:8000", "127.0.0.1:8000"),
    ],
)
def test_address_forms(address: str, target: str) -> None:
    assert grpc_target(address) == target


@pytest.mark.parametrize(
    "address",
    ["unix://relative/api.sock", "tcp://localhost:8000", "tcp://127.0.0.1", "http://x", "api.sock"],
)
def test_invalid_addresses_rejected(address: str) -> None:
    with pytest.raises(EndpointAddressError, match="invalid Workload API address"):
        grpc_target(address)


def test_address_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///var/run/x.sock")

    assert resolve_address(None) == "unix:///var/run/x.sock"
    assert resolve_address("/other.sock") == "/other.sock"


async def test_fetch_x509_context(agent: RunningAgent, client: WorkloadApiClient) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", hint="web"))

    context = await asyncio.to_thread(client.fetch_x509_context)

    assert context.default_svid.spiffe_id == SpiffeId.parse("spiffe://example.org/web")
    assert context.default_svid.hint == "web"
    bundle = context.bundles.get_bundle_for_trust_domain(TrustDomain("example.org"))
    assert bundle is not None
    assert bundle.x509_authorities == (agent.ca.ca.certificate,)
    assert b"BEGIN PRIVATE KEY" in context.default_svid.key_pem()


async def test_fetch_bundles(agent: RunningAgent, client: WorkloadApiClient) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    x509_bundles = await asyncio.to_thread(client.fetch_x509_bundles)
    jwt_bundles = await asyncio.to_thread(client.fetch_jwt_bundles)

    assert x509_bundles.trust_domains == (TrustDomain("example.org"),)
    jwt_bundle = jwt_bundles.get_bundle_for_trust_domain(TrustDomain("example.org"))
    assert jwt_bundle is not None
    assert jwt_bundle.jwt_authority(agent.ca.jwt_signer.key_id) is not None


async def test_jwt_fetch_and_validate(agent: RunningAgent, client: WorkloadApiClient) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    token = await asyncio.to_thread(client.fetch_jwt_svid, ["spiffe://example.org/db"])
    validated = await asyncio.to_thread(
        client.validate_jwt_svid, token.token, "spiffe://example.org/db"
    )

    assert token.spiffe_id == SpiffeId.parse("spiffe://example.org/web")
    assert validated.spiffe_id == token.spiffe_id
    assert isinstance(validated.claims["exp"], int)
    assert validated.claims["sub"] == "spiffe://example.org/web"


async def test_unmatched_workload_error_code(
    agent: RunningAgent, client: WorkloadApiClient
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID + 1}"))

    with pytest.raises(WorkloadApiError) as caught:
        await asyncio.to_thread(client.fetch_x509_context)

    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "no identity issued" in str(caught.value)


async def test_unreachable_agent_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = WorkloadApiClient(str(tmp_path / "missing.sock"), timeout=1)

    with pytest.raises(WorkloadApiError) as caught:
        await asyncio.to_thread(client.fetch_x509_context)
    client.close()

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


async def test_health_check(agent: RunningAgent, client: WorkloadApiClient) -> None:
    assert await asyncio.to_thread(client.health_check) == "SERVING"


async def test_watch_follows_rotation(agent: RunningAgent, client: WorkloadApiClient) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", x509_svid_ttl=4))
    updates: list[X509Context] = []
    two = threading.Event()

    def on_update(context: X509Context) -> None:
        updates.append(context)
        if len(updates) >= 2:
            two.set()

    watch = client.watch_x509_context(on_update)
    try:
        assert await asyncio.to_thread(two.wait, 10)
    finally:
        watch.cancel()
        await asyncio.to_thread(watch.join, 5)

    serials = [context.default_svid.leaf.serial_number for context in updates[:2]]
    assert serials[0] != serials[1]


async def test_x509_source_updates_subscribers(agent: RunningAgent) -> None:
    agent.register(
        make_entry("spiffe://example.org/a", f"unix:uid:{UID}", created_at=1),
        make_entry(
            "spiffe://example.org/b", f"unix:uid:{UID}", created_at=2, hint="beta", x509_svid_ttl=4
        ),
    )
    source = await asyncio.to_thread(
        X509Source, f"unix://{agent.socket_path}", picker=pick_by_hint("beta"), timeout=10
    )
    rotated = threading.Event()
    source.subscribe(rotated.set)
    first = source.svid
    try:
        assert await asyncio.to_thread(rotated.wait, 10)
        second = source.svid
    finally:
        source.close()

    assert first.spiffe_id == SpiffeId.parse("spiffe://example.org/b")
    assert second.leaf.serial_number != first.leaf.serial_number


async def test_x509_source_times_out_without_identity(agent: RunningAgent) -> None:
    with pytest.raises(WorkloadApiError, match="no identity issued"):
        await asyncio.to_thread(X509Source, f"unix://{agent.socket_path}", timeout=1)


async def test_jwt_source_validates_locally(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    def fetch_and_validate() -> SpiffeId:
        from datetime import UTC, datetime

        with JwtSource(f"unix://{agent.socket_path}", timeout=10) as source:
            token = source.fetch_svid(["db"])
            return validate_jwt_svid(token.token, "db", source, datetime.now(UTC)).spiffe_id

    assert await asyncio.to_thread(fetch_and_validate) == SpiffeId.parse("spiffe://example.org/web")
