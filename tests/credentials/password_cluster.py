"""A PostgreSQL cluster that checks passwords, with the roles the database tests use."""

from __future__ import annotations

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

    def role_exists(self, name: str) -> bool:
        with self.admin() as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
        return row is not None
