"""Leased PostgreSQL users: the broker and its PostgreSQL operations."""

from warden.credentials.database.broker import (
    DatabaseBroker,
    IssuedCredential,
    RevocationSummary,
    new_lease_id,
)
from warden.credentials.database.postgres import PostgresConnection, RevocationReport

__all__ = [
    "DatabaseBroker",
    "IssuedCredential",
    "PostgresConnection",
    "RevocationReport",
    "RevocationSummary",
    "new_lease_id",
]
