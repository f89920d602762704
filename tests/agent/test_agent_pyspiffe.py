"""The SPIFFE project's Python client (`spiffe`, `spiffe-tls`) against Warden's Workload API.

Each client runs in its own process (see pyspiffe_client.py). Server and client workloads are
told apart by supplementary groups, which the unix attestor reports as selectors.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_support import RunningAgent, make_entry, public_socket_dir, running_agent

CLIENT = Path(__file__).parent / "pyspiffe_client.py"
UID = os.geteuid()
needs_root = pytest.mark.skipif(UID != 0, reason="setting supplementary groups needs root")


@pytest.fixture
async def agent() -> AsyncIterator[RunningAgent]:
    directory = public_socket_dir()
    try:
        async with running_agent(directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def run_client(*args: str, groups: str = "", timeout: float = 30) -> list[dict[str, object]]:
    env = dict(os.environ, WARDEN_TEST_GROUPS=groups)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return [json.loads(line) for line in stdout.decode().splitlines()]


class ClientProcess:
    """A long-running client whose JSON lines are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str, groups: str = "") -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENT),
            *args,
            env=dict(os.environ, WARDEN_TEST_GROUPS=groups),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self, timeout: float = 15) -> dict[str, object]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            assert self.process.stderr is not None
            error = await self.process.stderr.read()
            raise AssertionError(f"client ended early: {error.decode()[-3000:]}")
        return json.loads(raw)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def test_pyspiffe_fetches_x509_and_jwt(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    [result] = await run_client("fetch", str(agent.socket_path), "spiffe://example.org/db")

    assert result["spiffe_id"] == "spiffe://example.org/web"
    assert result["key_matches"] is True
    assert result["trust_domains"] == ["example.org"]
    assert result["jwt_spiffe_id"] == "spiffe://example.org/web"
    assert result["jwt_audience"] == ["spiffe://example.org/db"]
    assert result["validated_id"] == "spiffe://example.org/web"
    assert result["jwt_bundle_domains"] == ["example.org"]
    assert result["source_id"] == "spiffe://example.org/web"
    assert result["jwt_source_validated"] == "spiffe://example.org/web"


async def test_pyspiffe_unmatched_process_denied(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID + 1}"))

    [result] = await run_client("error", str(agent.socket_path))

    assert "PERMISSION_DENIED" in str(result["error"])


async def test_pyspiffe_stream_follows_rotation(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", x509_svid_ttl=4))

    first, second = await run_client("watch", str(agent.socket_path), "2")

    assert first["ids"] == second["ids"] == ["spiffe://example.org/web"]
    assert first["serials"] != second["serials"]
    assert second["not_after"][0] > first["not_after"][0]


@needs_root
async def test_spiffetls_connects_two_workloads(agent: RunningAgent) -> None:
    agent.register(
        make_entry("spiffe://example.org/server", f"unix:uid:{UID}", "unix:supplementary_gid:1111"),
        make_entry("spiffe://example.org/client", f"unix:uid:{UID}", "unix:supplementary_gid:2222"),
    )
    server = await ClientProcess.start("serve", str(agent.socket_path), "1", groups="1111")
    try:
        port = (await server.line())["port"]

        [dialed] = await run_client(
            "dial", str(agent.socket_path), str(port), "spiffe://example.org/server", groups="2222"
        )
        seen = await server.line()
    finally:
        await server.close()

    assert dialed["own_id"] == "spiffe://example.org/client"
    assert dialed["reply"] == "hello spiffe://example.org/client, you said ping"
    assert seen["peer"] == "spiffe://example.org/client"


@needs_root
async def test_spiffetls_connections_verify_after_rotation(agent: RunningAgent) -> None:
    # The client's SVID rotates; the server keeps verifying new connections against the
    # bundle. (spiffe-tls 0.4 cannot switch a listening server to a rotated SVID with
    # pyOpenSSL 26, which forbids changing a context in use, so the rotating side here is the
    # client; warden.mtls's own tests rotate servers.)
    agent.register(
        make_entry("spiffe://example.org/server", f"unix:uid:{UID}", "unix:supplementary_gid:1111"),
        make_entry(
            "spiffe://example.org/client",
            f"unix:uid:{UID}",
            "unix:supplementary_gid:2222",
            x509_svid_ttl=4,
        ),
    )
    server = await ClientProcess.start("serve", str(agent.socket_path), "2", groups="1111")
    try:
        port = str((await server.line())["port"])
        target = "spiffe://example.org/server"
        [before] = await run_client("dial", str(agent.socket_path), port, target, groups="2222")
        first = await server.line()

        await asyncio.sleep(3)  # past the client SVID's half-life
        [after] = await run_client("dial", str(agent.socket_path), port, target, groups="2222")
        second = await server.line()
    finally:
        await server.close()

    assert before["reply"] == after["reply"] == "hello spiffe://example.org/client, you said ping"
    assert first["peer"] == second["peer"] == "spiffe://example.org/client"
    assert first["peer_serial"] != second["peer_serial"]


def test_generated_proto_matches_pyspiffe() -> None:
    # Compare message and field names, numbers and types, and the service's methods, with
    # the copy of the standard proto that the spiffe package ships.
    script = (
        "import sys, importlib\n"
        "m = importlib.import_module(sys.argv[1])\n"
        "d = m.DESCRIPTOR\n"
        "out = [(t.name, [(f.name, f.number, f.type, f.is_repeated) for f in t.fields])"
        " for t in d.message_types_by_name.values()]\n"
        "out += [(s.full_name, [(x.name, x.input_type.name, x.output_type.name,"
        " x.client_streaming, x.server_streaming) for x in s.methods])"
        " for s in d.services_by_name.values()]\n"
        "print(sorted(map(repr, out)))\n"
    )
    warden = subprocess.run(
        [sys.executable, "-c", script, "warden.api.workload_pb2"],
        capture_output=True,
        text=True,
        check=True,
    )
    reference = subprocess.run(
        [sys.executable, "-c", script, "spiffe._proto.workload_pb2"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert warden.stdout == reference.stdout
