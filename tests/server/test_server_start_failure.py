"""A server whose start fails stops what it had started and leaves other servers alone."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from server_helpers import server_options

from warden.server.app import WardenServer
from warden.server.metrics import Metrics


def _server(tmp_path: Path, data: str, socket_path: Path) -> WardenServer:
    options = server_options(tmp_path, data_dir=tmp_path / data, socket_path=socket_path)
    return WardenServer(options, metrics=Metrics(CollectorRegistry()))


async def test_failed_start_keeps_the_running_servers_socket(tmp_path: Path) -> None:
    socket_path = tmp_path / "admin" / "api.sock"
    first = _server(tmp_path, "first", socket_path)
    await first.start()
    try:
        second = _server(tmp_path, "second", socket_path)
        with pytest.raises(Exception, match=r"api\.sock"):
            await second.start()

        assert socket_path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(socket_path))
    finally:
        await first.stop()


async def test_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    """A start that fails at the admin socket has already opened the TLS port and the
    private gRPC socket; both are closed again. A gRPC server left running this way once hung
    later tests in the same process."""
    squatted = tmp_path / "private"
    squatted.mkdir()
    squatted.chmod(0o707)  # writable by others: the server refuses to listen there
    server = _server(tmp_path, "data", squatted / "api.sock")
    with pytest.raises(Exception, match="private"):
        await server.start()

    assert server.tls_port
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", server.tls_port))
    assert server._private_dir is not None
    assert not server._private_dir.exists()
