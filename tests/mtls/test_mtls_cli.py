"""`warden api ...` and `warden proxy ...` as separate processes against a running agent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_support import RunningAgent, make_entry, public_socket_dir, running_agent

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


async def warden(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_fetch_x509_json_and_write(agent: RunningAgent, tmp_path: Path) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))

    code, out, err = await warden(
        "api",
        "fetch",
        "x509",
        "-socketPath",
        str(agent.socket_path),
        "-output",
        "json",
        "-write",
        str(tmp_path),
    )

    assert code == 0, err
    document = json.loads(out)
    assert [svid["spiffe_id"] for svid in document["svids"]] == ["spiffe://example.org/web"]
    assert list(document["bundles"]) == ["example.org"]
    assert stat.S_IMODE((tmp_path / "svid.0.key").stat().st_mode) == 0o600
    assert (tmp_path / "svid.0.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "bundle.0.pem").exists()


async def test_fetch_x509_text_from_environment(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
    env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET=f"unix://{agent.socket_path}", COLUMNS="200")

    code, out, err = await warden("api", "fetch", "x509", env=env)

    assert code == 0, err
    assert "Received 1 svid after" in out
    assert "spiffe://example.org/web" in out


async def test_fetch_and_validate_jwt(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}"))
    socket_args = ("-socketPath", str(agent.socket_path))

    code, out, err = await warden(
        "api", "fetch", "jwt", "-audience", "db", *socket_args, "-output", "json"
    )
    assert code == 0, err
    token = json.loads(out)["svids"][0]["svid"]

    code, out, err = await warden(
        "api", "validate", "jwt", "-audience", "db", "-svid", token, *socket_args
    )
    assert code == 0, err
    assert "SVID is valid." in out
    assert "SPIFFE ID : spiffe://example.org/web" in out

    code, out, err = await warden(
        "api", "validate", "jwt", "-audience", "other", "-svid", token, *socket_args
    )
    assert code == 1
    assert "SVID is not valid" in err
    assert "audience 'other'" in err


async def test_fetch_without_identity_fails(agent: RunningAgent) -> None:
    code, _, err = await warden("api", "fetch", "x509", "-socketPath", str(agent.socket_path))

    assert code == 1
    assert "PERMISSION_DENIED: no identity issued" in err


async def test_healthcheck(agent: RunningAgent, tmp_path: Path) -> None:
    healthy = await warden("api", "healthcheck", "-socketPath", str(agent.socket_path))
    unhealthy = await warden("api", "healthcheck", "-socketPath", str(tmp_path / "none.sock"))

    assert healthy[0] == 0
    assert healthy[1].strip() == "Agent is healthy."
    assert unhealthy[0] == 1
    assert "Agent is unhealthy" in unhealthy[2]


async def test_watch_prints_updates(agent: RunningAgent) -> None:
    agent.register(make_entry("spiffe://example.org/web", f"unix:uid:{UID}", x509_svid_ttl=4))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        "api",
        "watch",
        "-socketPath",
        str(agent.socket_path),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert process.stdout is not None
    received = 0
    try:
        while received < 2:
            line = await asyncio.wait_for(process.stdout.readline(), 10)
            assert line, "watch ended early"
            if line.startswith(b"Received 1 svid"):
                received += 1
    finally:
        process.kill()
        await process.wait()

    assert received == 2


@needs_root
async def test_proxy_commands_connect_two_applications(agent: RunningAgent) -> None:
    agent.register(
        make_entry(
            "spiffe://example.org/backend", f"unix:uid:{UID}", "unix:supplementary_gid:1111"
        ),
        make_entry(
            "spiffe://example.org/frontend", f"unix:uid:{UID}", "unix:supplementary_gid:2222"
        ),
    )

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    application = await asyncio.start_server(echo, "127.0.0.1", 0)
    app_port = application.sockets[0].getsockname()[1]
    inbound_port, outbound_port = _free_ports(2)
    processes = []
    try:
        processes.append(
            await _start(
                "proxy",
                "inbound",
                "-listen",
                f"127.0.0.1:{inbound_port}",
                "-forward",
                f"127.0.0.1:{app_port}",
                "-allow",
                "spiffe://example.org/frontend",
                "-socketPath",
                str(agent.socket_path),
                groups=[1111],
            )
        )
        processes.append(
            await _start(
                "proxy",
                "outbound",
                "-listen",
                f"127.0.0.1:{outbound_port}",
                "-connect",
                f"127.0.0.1:{inbound_port}",
                "-expect",
                "spiffe://example.org/backend",
                "-socketPath",
                str(agent.socket_path),
                groups=[2222],
            )
        )
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 15)
            assert line.startswith(b"proxy listening"), line

        reader, writer = await asyncio.open_connection("127.0.0.1", outbound_port)
        writer.write(b"hello\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
        application.close()

    assert reply == b"echo:hello\n"


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


async def _start(*args: str, groups: list[int]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        extra_groups=groups,
    )


async def test_dev_stack_serves_the_user_at_once() -> None:
    import signal

    from warden.mtls import WorkloadApiClient

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        "dev",
        "-trustDomain",
        "dev.test",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any("Workload API" in line for line in lines):
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "warden dev ended early"
            lines.append(line)
        socket_url = next(line.split()[-1] for line in lines if "Workload API" in line)
        root = Path(next(line.split("Data: ")[1].strip() for line in lines if "Data:" in line))

        def fetch() -> str:
            with WorkloadApiClient(socket_url) as client:
                return str(client.fetch_x509_svid().spiffe_id)

        spiffe_id = await asyncio.to_thread(fetch)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert spiffe_id == f"spiffe://dev.test/dev/uid-{UID}"
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "Warden dev stack stopped." in stdout.decode()
    assert not root.exists()
