"""A Warden server running in the test's event loop, with its data in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from warden.server.app import WardenServer
from warden.server.metrics import Metrics
from warden.server.options import ServerOptions
from warden.spiffe import TrustDomain


def server_options(tmp_path: Path, **overrides: object) -> ServerOptions:
    values: dict[str, object] = {
        "trust_domain": TrustDomain("example.org"),
        "data_dir": tmp_path / "data",
        "bind_address": "127.0.0.1",
        "bind_port": 0,
        "socket_path": tmp_path / "admin" / "api.sock",
        "node_attestors": {"join_token": {}},
        "ratelimit_attestation": False,
        "event_poll_interval": 0.05,
    }
    values.update(overrides)
    return ServerOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WardenServer]:
    instance = WardenServer(server_options(tmp_path), metrics=Metrics(CollectorRegistry()))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
