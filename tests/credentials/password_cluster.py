"""A PostgreSQL cluster that checks passwords, with the roles the database tests use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

MANAGER = "warden_manager"
MANAGER_PASSWORD = "manager-initial-password"
OWNER = "orders_owner"

HBA_RULES = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


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

    @classmethod
    def prepare(cls, cluster: Any) -> PasswordCluster:
        """Make a running cluster check passwords over TCP and create the test roles."""
        hba = cluster.data_dir / "pg_hba.conf"
        stat = os.stat(hba)
        hba.write_text(HBA_RULES)
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
        return cls(cluster)

    def role_exists(self, name: str) -> bool:
        with self.admin() as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
        return row is not None
