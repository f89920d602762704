"""Alembic environment: migrations run only on the connection Warden passes in."""

from __future__ import annotations

from alembic import context

from warden.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Warden's migrations run through warden.store.engine.upgrade_schema, which passes a "
        "connection; the alembic command line is not configured for them"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
