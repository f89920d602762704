"""Alembic migrations of the datastore, run by warden.store.engine.upgrade_schema."""
