"""The Workload API over its real Unix socket, called with Warden's generated client code."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from agent_support import (
    LocalCA,
    RunningAgent,
    connect_from_child,
    make_entry,
    public_socket_dir,
    running_agent,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from warden.agent import EntryUpdate
from warden.agent.listener import SocketInUseError, prepare_socket_path
from warden.agent.ratelimit import RateLimit
from warden.api import workload_pb2, workload_pb2_grpc
from warden.mtls.der import load_der_certificates
from warden.spiffe import Bundle, TrustDomain, validate_x509_svid

HEADER = (("workload.spiffe.io", "true"),)
UID = os.geteuid()


@pytest.fixture
def socket_dir() -> AsyncIterator[Path]:
    directory = public_socket_dir()
    yield directory  # type: ignore[misc]
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def agent(socket_dir: Path) -> AsyncIterator[RunningAgent]:
    async with running_agent(socket_dir) as running:
        yield running


@pytest.fixture
async def stub(agent: RunningAgent) -> AsyncIterator[workload_pb2_grpc.SpiffeWorkloadAPIStub]:
    async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
        yield workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)


async def first_x509(
    stub: workload_pb2_grpc.SpiffeWorkloadAPIStub,
) -> workload_pb2.X509SVIDResponse:
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
    try:
        return await asyncio.wait_for(call.read(), 10)
    finally:
        call.cancel()


async def status_of(coroutine) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coroutine
    return caught.value.code()


def certificates(der: bytes) -> list[x509.Certificate]:
    return load_der_certificates(der)


async def test_x509_svid_has_chain_key_and_bundle(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", hint="internal"))

    response = await first_x509(stub)

    assert len(response.svids) == 1
    svid = response.svids[0]
    assert svid.spiffe_id == "spiffe://example.org/web"
    assert svid.hint == "internal"
    chain = certificates(svid.x509_svid)
    key = serialization.load_der_private_key(svid.x509_svid_key, password=None)
    assert chain[0].public_key() == key.public_key()
    bundle = certificates(svid.bundle)
    assert bundle == [agent.ca.ca.certificate]
    spiffe_id = validate_x509_svid(
        chain, Bundle(TrustDomain("example.org"), tuple(bundle)), datetime.now(UTC)
    )
    assert str(spiffe_id) == "spiffe://example.org/web"


async def test_svids_ordered_oldest_entry_first(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(
        make_entry("spiffe://example.org/newer", f"unix:uid:{UID}", created_at=2000),
        make_entry("spiffe://example.org/older", f"unix:uid:{UID}", created_at=1000),
    )

    response = await first_x509(stub)

    assert [svid.spiffe_id for svid in response.svids] == [
        "spiffe://example.org/older",
        "spiffe://example.org/newer",
    ]


def all_calls(stub: workload_pb2_grpc.SpiffeWorkloadAPIStub, metadata: tuple[tuple[str, str], ...]):  # type: ignore[no-untyped-def]
    async def read_first(call) -> object:  # type: ignore[no-untyped-def]
        try:
            return await call.read()
        finally:
            call.cancel()

    return {
        "FetchX509SVID": lambda: read_first(
            stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=metadata)
        ),
        "FetchX509Bundles": lambda: read_first(
            stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=metadata)
        ),
        "FetchJWTBundles": lambda: read_first(
            stub.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=metadata)
        ),
        "FetchJWTSVID": lambda: stub.FetchJWTSVID(
            workload_pb2.JWTSVIDRequest(audience=["a"]), metadata=metadata
        ),
        "ValidateJWTSVID": lambda: stub.ValidateJWTSVID(
            workload_pb2.ValidateJWTSVIDRequest(audience="a", svid="x.y.z"), metadata=metadata
        ),
    }


@pytest.mark.parametrize(
    "method",
    ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles", "FetchJWTSVID", "ValidateJWTSVID"],
)
async def test_missing_header_invalid_argument(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub, method: str
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    code = await status_of(all_calls(stub, ())[method]())

    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "method",
    ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles", "FetchJWTSVID", "ValidateJWTSVID"],
)
async def test_no_matching_entry_permission_denied(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub, method: str
) -> None:
    agent.register(make_entry("spiffe://example.org/other", f"unix:uid:{UID + 1}"))

    code = await status_of(all_calls(stub, HEADER)[method]())

    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_jwt_svid_needs_audience(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    code = await status_of(stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(), metadata=HEADER))

    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_jwt_svid_for_one_requested_id(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(
        make_entry("spiffe://example.org/a", f"unix:uid:{UID}"),
        make_entry("spiffe://example.org/b", f"unix:uid:{UID}"),
    )

    both = await stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["db"]), metadata=HEADER)
    only_b = await stub.FetchJWTSVID(
        workload_pb2.JWTSVIDRequest(audience=["db"], spiffe_id="spiffe://example.org/b"),
        metadata=HEADER,
    )
    other = stub.FetchJWTSVID(
        workload_pb2.JWTSVIDRequest(audience=["db"], spiffe_id="spiffe://example.org/c"),
        metadata=HEADER,
    )

    assert [svid.spiffe_id for svid in both.svids] == [
        "spiffe://example.org/a",
        "spiffe://example.org/b",
    ]
    assert [svid.spiffe_id for svid in only_b.svids] == ["spiffe://example.org/b"]
    assert await status_of(other) == grpc.StatusCode.PERMISSION_DENIED


async def test_validate_jwt_svid(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
    fetched = await stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["db"]), metadata=HEADER)
    token = fetched.svids[0].svid

    valid = await stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience="db", svid=token), metadata=HEADER
    )
    wrong_audience = stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience="cache", svid=token), metadata=HEADER
    )
    foreign = LocalCA()
    foreign.register(make_entry("spiffe://example.org/web", "unix:uid:1", entry_id="f"))
    forged = (await foreign.sign_jwt_svid("f", ["db"])).token
    untrusted = stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience="db", svid=forged), metadata=HEADER
    )

    assert valid.spiffe_id == "spiffe://example.org/web"
    claims = json_format.MessageToDict(valid.claims)
    assert claims["sub"] == "spiffe://example.org/web"
    assert claims["aud"] in ("db", ["db"])
    assert claims["exp"] > time.time()
    assert await status_of(wrong_audience) == grpc.StatusCode.INVALID_ARGUMENT
    assert await status_of(untrusted) == grpc.StatusCode.INVALID_ARGUMENT


async def test_bundle_streams_carry_both_formats(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    x509_call = stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=HEADER)
    x509_bundles = await x509_call.read()
    x509_call.cancel()
    jwt_call = stub.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=HEADER)
    jwt_bundles = await jwt_call.read()
    jwt_call.cancel()

    assert certificates(x509_bundles.bundles["spiffe://example.org"]) == [agent.ca.ca.certificate]
    jwks = json.loads(jwt_bundles.bundles["spiffe://example.org"])
    assert [key["kid"] for key in jwks["keys"]] == [agent.ca.jwt_signer.key_id]
    assert all(key["use"] == "jwt-svid" for key in jwks["keys"])


async def test_stream_sends_new_svid_at_half_life(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", x509_svid_ttl=4))
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
    try:
        first = await asyncio.wait_for(call.read(), 10)
        received_first = time.monotonic()
        second = await asyncio.wait_for(call.read(), 10)
        waited = time.monotonic() - received_first
    finally:
        call.cancel()

    first_leaf = certificates(first.svids[0].x509_svid)[0]
    second_leaf = certificates(second.svids[0].x509_svid)[0]
    assert second_leaf.serial_number != first_leaf.serial_number
    # Half of a 4 s lifetime; generous bounds for a loaded machine.
    assert 1.0 < waited < 4.0
    bundle = Bundle(TrustDomain("example.org"), tuple(certificates(second.svids[0].bundle)))
    validate_x509_svid([second_leaf], bundle, datetime.now(UTC))


async def test_deleted_entry_withdrawn_within_a_second(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    web = make_entry("spiffe://example.org/web", f"unix:uid:{UID}")
    admin = make_entry("spiffe://example.org/admin", f"unix:uid:{UID}")
    agent.register(web, admin)
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
    try:
        first = await asyncio.wait_for(call.read(), 10)
        assert len(first.svids) == 2

        agent.delete(admin)
        started = time.monotonic()
        second = await asyncio.wait_for(call.read(), 1.0)
        assert time.monotonic() - started < 1.0
        assert [svid.spiffe_id for svid in second.svids] == ["spiffe://example.org/web"]

        agent.delete(web)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 1.0)
        assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        call.cancel()


async def test_bundle_change_resends_full_state(
    agent: RunningAgent, stub: workload_pb2_grpc.SpiffeWorkloadAPIStub
) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER)
    try:
        first = await asyncio.wait_for(call.read(), 10)
        extra = LocalCA().ca.certificate
        agent.manager.apply(EntryUpdate(bundle=agent.ca.bundle.with_x509_authorities(extra)))
        second = await asyncio.wait_for(call.read(), 1.0)
    finally:
        call.cancel()

    assert len(certificates(first.svids[0].bundle)) == 1
    assert len(certificates(second.svids[0].bundle)) == 2
    assert second.svids[0].x509_svid == first.svids[0].x509_svid


async def test_rate_limit_per_workload(socket_dir: Path) -> None:
    async with running_agent(
        socket_dir, rate_limit=RateLimit(requests_per_second=0.5, burst=2)
    ) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            request = workload_pb2.JWTSVIDRequest(audience=["a"])
            await stub.FetchJWTSVID(request, metadata=HEADER)
            await stub.FetchJWTSVID(request, metadata=HEADER)

            code = await status_of(stub.FetchJWTSVID(request, metadata=HEADER))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_health_service_serving(agent: RunningAgent) -> None:
    async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest())

    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_unavailable_without_trust_bundle(socket_dir: Path) -> None:
    async with running_agent(socket_dir, svid_wait=0.3, with_bundle=False) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            code = await status_of(first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)))

    assert code == grpc.StatusCode.UNAVAILABLE


async def test_failed_attestation_unavailable(socket_dir: Path) -> None:
    from warden.agent.attestor.unix import UnixAttestor, UnixConfig

    too_small = UnixAttestor(UnixConfig(discover_workload_path=True, workload_size_limit=10))
    async with running_agent(socket_dir, attestors=[too_small]) as agent:
        agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await first_x509(workload_pb2_grpc.SpiffeWorkloadAPIStub(channel))

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "workload attestation failed" in (caught.value.details() or "")


def test_socket_file_is_world_writable(agent: RunningAgent) -> None:
    mode = agent.socket_path.stat().st_mode

    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o777


def test_live_socket_not_taken_over(agent: RunningAgent) -> None:
    with pytest.raises(SocketInUseError, match="in use by another process"):
        prepare_socket_path(agent.socket_path)


def test_stale_socket_replaced(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "api.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()

    prepare_socket_path(path)

    assert not path.exists()


def test_regular_file_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.write_text("data")

    with pytest.raises(FileExistsError, match="not a socket"):
        prepare_socket_path(path)
    assert path.read_text() == "data"


@pytest.mark.skipif(os.geteuid() != 0, reason="running a child as another user needs root")
async def test_uid_zero_entry_not_served_to_other_uid(socket_dir: Path) -> None:
    nobody = 65534
    async with running_agent(socket_dir) as agent:
        agent.register(make_entry("spiffe://example.org/root-only", "unix:uid:0"))
        foreign = await connect_from_child(agent.socket_path, socket_dir, uid=nobody)
        try:
            async with grpc.aio.insecure_channel(foreign.target) as channel:
                stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                denied = await status_of(first_x509(stub))

                # The same connection gets the entry made for its own uid.
                agent.register(make_entry("spiffe://example.org/nobody", f"unix:uid:{nobody}"))
                allowed = await first_x509(stub)
        finally:
            await foreign.close()

    assert denied == grpc.StatusCode.PERMISSION_DENIED
    assert [svid.spiffe_id for svid in allowed.svids] == ["spiffe://example.org/nobody"]


async def test_exec_does_not_inherit_other_binary_identity(socket_dir: Path) -> None:
    python = os.path.realpath(sys.executable)
    sleep = os.path.realpath("/bin/sleep")
    async with running_agent(socket_dir, discover_workload_path=True) as agent:
        agent.register(
            make_entry("spiffe://example.org/python", f"unix:path:{python}"),
            make_entry("spiffe://example.org/sleep", f"unix:path:{sleep}"),
        )
        foreign = await connect_from_child(agent.socket_path, socket_dir)
        try:
            async with grpc.aio.insecure_channel(foreign.target) as channel:
                stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                before = await first_x509(stub)

                await foreign.exec("/bin/sleep")
                with pytest.raises(grpc.aio.AioRpcError) as after:
                    await first_x509(stub)
        finally:
            await foreign.close()

    assert [svid.spiffe_id for svid in before.svids] == ["spiffe://example.org/python"]
    assert after.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "executed another program" in (after.value.details() or "")
