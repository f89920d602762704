"""The datastore's tables, as SQLAlchemy Core metadata.

The Alembic migrations under `migrations/versions` create these tables; a test checks that
the migrated schema and this metadata agree. Each later revision adds its tables here and in
a new migration (0002 added the credential leases and the JWT `jti` replay cache).

Long text values (SPIFFE IDs up to 2048 bytes, selector values up to 4096 bytes) are kept out
of multi-column indexes, because a PostgreSQL btree index row is limited to about 2.7 kB.
Uniqueness of an entry's (SPIFFE ID, parent ID, selector set) is enforced through a SHA-256
`similarity_key` for that reason.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from warden.store.columns import UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Maximum length of an entry id; SPIRE accepts caller-chosen ids up to 255 characters.
MAX_ENTRY_ID_LENGTH = 255

# Entry ids sort by code point on both databases ("C" collation on PostgreSQL), because bulk
# loading merges several id-ordered streams in Python.
EntryId = String(MAX_ENTRY_ID_LENGTH).with_variant(
    String(MAX_ENTRY_ID_LENGTH, collation="C"), "postgresql"
)

# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid, so the 64-bit ids are
# declared as Integer there.
BigId = BigInteger().with_variant(Integer(), "sqlite")

registration_entries = Table(
    "registration_entries",
    metadata,
    Column("id", EntryId, primary_key=True),
    Column("spiffe_id", Text, nullable=False),
    Column("parent_id", Text, nullable=False),
    Column("similarity_key", String(64), nullable=False, unique=True),
    Column("owner", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("x509_svid_ttl", Integer, nullable=False),
    Column("jwt_svid_ttl", Integer, nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("downstream", Boolean, nullable=False),
    Column("hint", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revision", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_delivered_at", UtcDateTime, nullable=True),
    CheckConstraint("x509_svid_ttl >= 0", name="x509_svid_ttl_not_negative"),
    CheckConstraint("jwt_svid_ttl >= 0", name="jwt_svid_ttl_not_negative"),
    CheckConstraint("length(trim(owner)) > 0", name="owner_not_blank"),
    Index(None, "spiffe_id"),
    Index(None, "parent_id"),
)

# Selectors, DNS names and federated trust domains keep the order the entry was written with
# (the first DNS name becomes the certificate's common name), so each row has a position.
entry_selectors = Table(
    "entry_selectors",
    metadata,
    Column(
        "entry_id",
        EntryId,
        ForeignKey("registration_entries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("type", Text, nullable=False),
    Column("value", Text, nullable=False),
)

entry_dns_names = Table(
    "entry_dns_names",
    metadata,
    Column(
        "entry_id",
        EntryId,
        ForeignKey("registration_entries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("value", Text, nullable=False),
)

entry_federates_with = Table(
    "entry_federates_with",
    metadata,
    Column(
        "entry_id",
        EntryId,
        ForeignKey("registration_entries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("trust_domain", String(255), nullable=False),
)

# The entry change log. Ids only grow (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), but
# on PostgreSQL they can become visible out of order; see warden.store.events.
entry_events = Table(
    "entry_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entry_id", EntryId, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "created_at"),
    sqlite_autoincrement=True,
)

attested_nodes = Table(
    "attested_nodes",
    metadata,
    Column("spiffe_id", Text, primary_key=True),
    Column("attestation_type", String(64), nullable=False),
    Column("serial_number", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("new_serial_number", String(64), nullable=False),
    Column("new_expires_at", UtcDateTime, nullable=True),
    Column("owner", Text, nullable=False),
    Column("banned", Boolean, nullable=False),
    Column("can_reattest", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=True),
    CheckConstraint("length(trim(owner)) > 0", name="owner_not_blank"),
)

node_selectors = Table(
    "node_selectors",
    metadata,
    Column(
        "spiffe_id",
        Text,
        ForeignKey("attested_nodes.spiffe_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("type", Text, nullable=False),
    Column("value", Text, nullable=False),
)

# Join tokens are stored as the SHA-256 of their value, so a copy of the database cannot be
# used to attest. `prefix` keeps the first characters for listings and messages.
join_tokens = Table(
    "join_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("prefix", String(16), nullable=False),
    Column("owner", Text, nullable=False),
    Column("alias_spiffe_id", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("used_by", Text, nullable=True),
    CheckConstraint("length(trim(owner)) > 0", name="owner_not_blank"),
    Index(None, "expires_at"),
)

# SPIFFE bundles (JWKS JSON) by trust domain: the server's own and federated ones.
bundles = Table(
    "bundles",
    metadata,
    Column("trust_domain", String(255), primary_key=True),
    Column("data", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Each server's CA journal (its current, next and old authorities), opaque to the datastore.
ca_journals = Table(
    "ca_journals",
    metadata,
    Column("server_id", String(255), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The audit log, a hash chain: each record stores SHA-256(previous hash || canonical JSON of
# the record). Triggers reject UPDATE and DELETE; see warden.store.audit.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("server_id", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Index(None, "recorded_at"),
    Index(None, "action"),
)

# One row (id 1): the last sequence number and hash of the chain. Appends lock it, so servers
# sharing a database extend one linear chain, and verification compares the log's tail with it
# to detect records removed from the end.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Leases of brokered credentials (database users today). `lease_id` has the form
# `<kind>/<connection>/<role>/<random>`, so revoking by prefix is a range scan of the primary
# key ("C" collation on PostgreSQL, where LIKE 'prefix%' needs it to use the index). `details`
# is JSON of non-secret, kind-specific facts such as the database user name; no password is
# ever stored. A server that revokes a lease first claims it (`claimed_by`, `claimed_until`),
# so servers sharing the database never revoke one lease twice, and a claim left by a server
# that crashed lapses at `claimed_until`.
leases = Table(
    "leases",
    metadata,
    Column("lease_id", EntryId, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("spiffe_id", Text, nullable=False),
    Column("owners", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("server_id", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("max_expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Index(None, "expires_at"),
    Index(None, "spiffe_id"),
)

# `jti` values of the JWTs that token exchange accepted, kept until the token expires so that
# a replay is caught by any server sharing the database. `key` is the hex SHA-256 of the
# issuing trust domain and the `jti`, which bounds the key's size whatever the token carries.
jti_replay = Table(
    "jti_replay",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)

#: Tables whose rows the server role may insert, update and delete.
MUTABLE_TABLES = (
    "registration_entries",
    "entry_selectors",
    "entry_dns_names",
    "entry_federates_with",
    "entry_events",
    "attested_nodes",
    "node_selectors",
    "join_tokens",
    "bundles",
    "ca_journals",
    "leases",
    "jti_replay",
)
