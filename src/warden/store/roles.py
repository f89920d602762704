"""Running the server as a restricted PostgreSQL role.

The audit log's triggers stop UPDATE and DELETE, but a table's owner may disable triggers.
So in production the tables belong to one role, the one that migrates the schema. The
server connects as another role with only the grants below. That role can read and write
the registry, append to the audit log and move the chain head forward, but it cannot change
or remove an audit record.

    CREATE ROLE warden_owner LOGIN PASSWORD '…';
    CREATE ROLE warden_server LOGIN PASSWORD '…';
    CREATE DATABASE warden OWNER warden_owner;
    -- as warden_owner: migrate_datastore("postgresql://warden_owner@db.example/warden")
    -- as warden_owner: the statements of server_role_grants("warden_server")
"""

from __future__ import annotations

from psycopg import sql

from warden.store.schema import MUTABLE_TABLES

#: Sequences the server role draws ids from.
SEQUENCES = ("entry_events_id_seq",)


def server_role_grants(role: str) -> list[str]:
    """Return the GRANT statements that let `role` run the server and nothing more."""
    name = sql.Identifier(role).as_string(None)
    tables = ", ".join(MUTABLE_TABLES)
    return [
        f"GRANT USAGE ON SCHEMA public TO {name}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {name}",
        f"GRANT SELECT, INSERT ON audit_log TO {name}",
        f"GRANT SELECT, UPDATE ON audit_head TO {name}",
        f"GRANT SELECT ON alembic_version TO {name}",
        f"GRANT USAGE, SELECT ON SEQUENCE {', '.join(SEQUENCES)} TO {name}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {name}",
        f"REVOKE DELETE, TRUNCATE ON audit_head FROM {name}",
    ]
