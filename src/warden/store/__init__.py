"""Warden's server datastore: SQLAlchemy on SQLite (default) or PostgreSQL.

`Datastore` is the entry point; the value types and errors below are what its methods take,
return and raise. Governance reads the registry through `warden.store.inventory` instead.
"""

from warden.store.datastore import Datastore
from warden.store.engine import migrate_datastore
from warden.store.errors import (
    AgentBanned,
    AlreadyExists,
    DatabaseUnavailable,
    InvalidEntry,
    InvalidInput,
    NotFound,
    RevisionConflict,
    SchemaError,
    StoreError,
    TokenInvalid,
    TokenProblem,
)
from warden.store.events import EntryEventFollower
from warden.store.models import (
    AttestedNode,
    AuditEvent,
    AuditRecord,
    AuditVerification,
    EntryEvent,
    EntryEventKind,
    EntrySpec,
    JoinToken,
    RegistrationEntry,
    SelectorMatch,
)
from warden.store.urls import to_sqlalchemy_url, url_from_sql_plugin

__all__ = [
    "AgentBanned",
    "AlreadyExists",
    "AttestedNode",
    "AuditEvent",
    "AuditRecord",
    "AuditVerification",
    "DatabaseUnavailable",
    "Datastore",
    "EntryEvent",
    "EntryEventFollower",
    "EntryEventKind",
    "EntrySpec",
    "InvalidEntry",
    "InvalidInput",
    "JoinToken",
    "NotFound",
    "RegistrationEntry",
    "RevisionConflict",
    "SchemaError",
    "SelectorMatch",
    "StoreError",
    "TokenInvalid",
    "TokenProblem",
    "migrate_datastore",
    "to_sqlalchemy_url",
    "url_from_sql_plugin",
]
