"""A Warden server running in the test's event loop, with its data in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from server_helpers import server_options

from warden.server.app import WardenServer
from warden.server.metrics import Metrics


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WardenServer]:
    instance = WardenServer(server_options(tmp_path), metrics=Metrics(CollectorRegistry()))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
