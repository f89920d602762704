"""Fixtures of the credential tests: servers with the HTTP API, and a PostgreSQL cluster
that checks passwords.

The suite's shared cluster trusts every local connection, so it would accept a leased
user's login whatever the password and ignore `VALID UNTIL`, which applies to passwords
only. The cluster here requires SCRAM passwords over TCP from every role but `postgres`,
so the tests prove that leased users log in with their password and no longer can once
revoked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from credentials_support import credential_server_options
from password_cluster import PasswordCluster
from prometheus_client import CollectorRegistry

from warden.server.app import WardenServer
from warden.server.metrics import Metrics

# The CLI tests run a real agent, built with the agent tests' helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WardenServer]:
    """A server whose HTTP API serves plain HTTP on loopback, with the default policy."""
    instance = WardenServer(
        credential_server_options(tmp_path), metrics=Metrics(CollectorRegistry())
    )
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture(scope="session")
def password_cluster() -> Iterator[PasswordCluster]:
    """A cluster started like the suite's, whose pg_hba.conf requires passwords.

    Skips when initdb and pg_ctl are missing, fails under CI=true; modules that use it are
    marked `postgres`.
    """
    from pg import PostgresCluster, find_bindir

    if find_bindir() is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install postgresql-15")
        pytest.skip(f"{message}; install postgresql-15 or set WARDEN_PG_BINDIR")
    cluster = PostgresCluster.start()
    try:
        yield PasswordCluster.prepare(cluster)
    finally:
        cluster.stop()
