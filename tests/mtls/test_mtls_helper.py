"""The certificate helper: its configuration, the files it writes, and nginx fed by them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_support import LocalCA, RunningAgent, make_entry, public_socket_dir, running_agent
from cryptography import x509
from mtls_support import StaticSource, issue

from warden.mtls import X509Source, authorize_id, ssl_client_context
from warden.mtls.helper import HelperConfigError, parse_config

UID = os.geteuid()
HELPER_GROUP = 1111
needs_root = pytest.mark.skipif(UID != 0, reason="setting supplementary groups needs root")


def test_config_with_spiffe_helper_keys() -> None:
    config = parse_config(
        """
        agent_address = "/tmp/spire-agent/public/api.sock"
        cmd = "ghostunnel"
        cmd_args = "server --listen localhost:8002 --target 'localhost:8001'"
        cert_dir = "certs"
        renew_signal = "SIGUSR1"
        svid_file_name = "svid.pem"
        svid_key_file_name = "svid_key.pem"
        svid_bundle_file_name = "svid_bundle.pem"
        jwt_svids = [{jwt_audience="db", jwt_extra_audiences=["cache"], jwt_svid_file_name="db.token"}]
        jwt_bundle_file_name = "bundle.json"
        cert_file_mode = 0444
        key_file_mode = 0400
        """
    )

    assert config.agent_address == "/tmp/spire-agent/public/api.sock"
    assert config.renew_signal == "SIGUSR1"
    assert config.cert_file_mode == 0o444
    assert config.key_file_mode == 0o400
    assert config.jwt_svid_file_mode == 0o600
    assert config.jwt_svids[0].jwt_extra_audiences == ["cache"]


def test_legacy_camel_case_keys_accepted() -> None:
    config = parse_config(
        'agentAddress = "/a.sock"\ncertDir = "d"\nsvidFileName = "s.pem"\n'
        'svidKeyFileName = "k.pem"\nsvidBundleFileName = "b.pem"\n'
    )

    assert config.agent_address == "/a.sock"
    assert config.svid_key_file_name == "k.pem"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('svid_file_name = "s.pem"\nsvid_fle_name = "x"', "unknown key 'svid_fle_name'"),
        ('svid_file_name = "s.pem"', "must be set together"),
        ('jwt_bundle_file_name = "b.json"\ncert_file_mode = 0999', "write it in octal"),
        ('jwt_bundle_file_name = "b.json"\nrenew_signal = "SIGNOPE"', "invalid renew_signal"),
        ('cmd = "nginx"', "nothing to write"),
        ("svid_file_name = ", "invalid HCL"),
    ],
)
def test_invalid_config_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(HelperConfigError, match=message):
        parse_config(text)


@pytest.fixture
async def agent() -> AsyncIterator[RunningAgent]:
    directory = public_socket_dir()
    try:
        async with running_agent(directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def start_helper(
    config_path: Path, *extra: str, groups: list[int] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        "helper",
        "-config",
        str(config_path),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        extra_groups=groups,
    )


async def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 15)
    return stderr.decode()


def leaf_serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


async def test_helper_writes_files_and_reloads_on_rotation(
    agent: RunningAgent, tmp_path: Path
) -> None:
    agent.register(make_entry("spiffe://example.org/app", f"unix:uid:{UID}", x509_svid_ttl=4))
    counter = tmp_path / "reloads"
    config = tmp_path / "helper.conf"
    config.write_text(
        f'agent_address = "unix://{agent.socket_path}"\n'
        f'cert_dir = "{tmp_path}"\n'
        'svid_file_name = "svid.pem"\n'
        'svid_key_file_name = "svid_key.pem"\n'
        'svid_bundle_file_name = "svid_bundle.pem"\n'
        'jwt_bundle_file_name = "jwt_bundle.json"\n'
        'jwt_svids = [{jwt_audience="db", jwt_svid_file_name="db.token"}]\n'
        'reload_cmd = "/bin/sh"\n'
        f"reload_cmd_args = \"-c 'echo reloaded >> {counter}'\"\n"
    )
    helper = await start_helper(config)
    try:
        await wait_for(lambda: counter.exists() and len(counter.read_text().splitlines()) >= 2)
        await wait_for(
            lambda: (tmp_path / "db.token").exists() and (tmp_path / "jwt_bundle.json").exists()
        )
    finally:
        output = await stop(helper)

    assert helper.returncode == 0, output
    assert stat.S_IMODE((tmp_path / "svid_key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "svid.pem").stat().st_mode) == 0o644
    bundle = x509.load_pem_x509_certificates((tmp_path / "svid_bundle.pem").read_bytes())
    assert bundle == [agent.ca.ca.certificate]
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "svid_key.pem").read_bytes()
    assert (tmp_path / "db.token").read_text().count(".") == 2
    assert "PRIVATE KEY" not in output


async def test_helper_exit_when_ready(agent: RunningAgent, tmp_path: Path) -> None:
    agent.register(make_entry("spiffe://example.org/app", f"unix:uid:{UID}"))
    config = tmp_path / "helper.conf"
    config.write_text(
        f'agent_address = "{agent.socket_path}"\ncert_dir = "{tmp_path}"\n'
        'svid_file_name = "a.pem"\nsvid_key_file_name = "a.key"\nsvid_bundle_file_name = "ca.pem"\n'
    )

    helper = await start_helper(config, "-exitWhenReady")
    _, stderr = await asyncio.wait_for(helper.communicate(), 15)
    output = stderr.decode()

    assert helper.returncode == 0, output
    assert (tmp_path / "a.pem").exists()
    assert (tmp_path / "a.key").exists()


# nginx from Debian's packages, fed by the helper.

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.fixture
def nginx_binary() -> str:
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed; CI must install it (make system-packages)")
        pytest.skip("nginx is not installed; install it with apt-get install nginx")
    return NGINX


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nginx_conf(directory: Path, port: int) -> Path:
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {directory}/svid.pem;
        ssl_certificate_key {directory}/svid_key.pem;
        ssl_client_certificate {directory}/svid_bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {{ return 200 "verify=$ssl_client_verify\\n"; }}
    }}
}}
"""
    )
    return conf


def https_get(port: int, context: ssl.SSLContext) -> tuple[str, int]:
    """Return nginx's response (status line and body) and the serial it presented."""
    from warden.mtls import check_peer

    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock) as tls,
    ):
        check_peer(tls)
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := tls.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace"), x509.load_der_x509_certificate(
        der
    ).serial_number


@needs_root
async def test_nginx_serves_with_helper_files(
    agent: RunningAgent, tmp_path: Path, nginx_binary: str
) -> None:
    nginx_id = "spiffe://example.org/nginx"
    agent.register(
        make_entry(
            nginx_id,
            f"unix:uid:{UID}",
            f"unix:supplementary_gid:{HELPER_GROUP}",
            created_at=1,
            x509_svid_ttl=4,
            hint="nginx",
        ),
        make_entry("spiffe://example.org/client", f"unix:uid:{UID}", created_at=2),
    )
    port = free_port()
    conf = nginx_conf(tmp_path, port)
    config = tmp_path / "helper.conf"
    config.write_text(
        f'agent_address = "unix://{agent.socket_path}"\n'
        f'cert_dir = "{tmp_path}"\n'
        'svid_file_name = "svid.pem"\n'
        'svid_key_file_name = "svid_key.pem"\n'
        'svid_bundle_file_name = "svid_bundle.pem"\n'
        'hint = "nginx"\n'
        f'cmd = "{nginx_binary}"\n'
        f"cmd_args = \"-c {conf} -g 'daemon off;'\"\n"
        'renew_signal = "SIGHUP"\n'
    )
    helper = await start_helper(config, groups=[HELPER_GROUP])
    source = None
    try:
        source = await asyncio.to_thread(X509Source, f"unix://{agent.socket_path}", timeout=10)
        assert str(source.svid.spiffe_id) == "spiffe://example.org/client"
        client = ssl_client_context(source, authorize_id(nginx_id))
        await wait_for(lambda: (tmp_path / "nginx.pid").exists())

        async def get() -> tuple[str, int]:
            deadline = time.monotonic() + 10
            while True:
                try:
                    return await asyncio.to_thread(https_get, port, client)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

        first_response, first_serial = await get()

        foreign = LocalCA()
        intruder = ssl_client_context(
            StaticSource(issue(foreign, "spiffe://example.org/client"), agent.ca),
            authorize_id(nginx_id),
        )
        rejected, _ = await asyncio.to_thread(https_get, port, intruder)

        # The SVID of nginx rotates at about half of its 4 s lifetime; the helper rewrites
        # the files and sends SIGHUP, and nginx then serves the new certificate.
        deadline = time.monotonic() + 15
        second_response, second_serial = first_response, first_serial
        while second_serial == first_serial and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            second_response, second_serial = await get()
    finally:
        if source is not None:
            source.close()
        output = await stop(helper)

    assert "200 OK" in first_response
    assert "verify=SUCCESS" in first_response
    assert "400 Bad Request" in rejected
    assert "verify=SUCCESS" not in rejected
    assert second_serial != first_serial, output[-2000:]
    assert "200 OK" in second_response
    assert "signalled the managed process" in output
