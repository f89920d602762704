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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from credentials_support import credential_server_options
from prometheus_client import CollectorRegistry
from psycopg import sql

from warden.server.app import WardenServer
from warden.server.metrics import Metrics

MANAGER = "warden_manager"
MANAGER_PASSWORD = "manager-initial-password"
OWNER = "orders_owner"

_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


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


@dataclass
class PasswordCluster:
    """A PostgreSQL cluster that checks passwords over TCP, with a management role."""

    cluster: Any

    @property
    def port(self) -> int:
        return int(self.cluster.port)

    def manager_url(self, database: str) -> str:
        return f"postgresql://{MANAGER}@127.0.0.1:{self.port}/{database}"

    def connect_as(self, user: str, password: str, database: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=database,
            user=user,
            password=password,
            autocommit=True,
            connect_timeout=5,
        )

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return self.cluster.connect(database)  # type: ignore[no-any-return]

    def create_orders_database(self, name: str) -> None:
        """Create a database owned by the owner role, with one table of orders."""
        self.cluster.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(OWNER)
            )
        )
        with self.admin(name) as connection:
            connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(OWNER)))
            connection.execute("CREATE TABLE orders (id integer PRIMARY KEY, item text)")
            connection.execute("INSERT INTO orders VALUES (1, 'tea'), (2, 'coffee')")

    def role_exists(self, name: str) -> bool:
        with self.admin() as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
        return row is not None


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
        hba = cluster.data_dir / "pg_hba.conf"
        stat = os.stat(hba)
        hba.write_text(_HBA)
        os.chown(hba, stat.st_uid, stat.st_gid)
        cluster.execute("SELECT pg_reload_conf()")
        for statement in (
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(MANAGER), sql.Literal(MANAGER_PASSWORD)
            ),
            sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(MANAGER)),
            sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(OWNER)),
            # REASSIGN OWNED ... TO orders_owner needs the privileges of the owner role.
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(OWNER), sql.Identifier(MANAGER)),
        ):
            cluster.execute(statement)
        yield PasswordCluster(cluster)
    finally:
        cluster.stop()
