"""Create the datastore: entries, agents, join tokens, bundles, CA journals, audit log.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from warden.store.columns import UtcDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ZERO_HASH = "0" * 64
# Entry ids sort by code point on PostgreSQL too, as bulk loading merges id-ordered streams.
EntryId = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def _entry_child(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column(
            "entry_id",
            EntryId,
            sa.ForeignKey(
                "registration_entries.id",
                ondelete="CASCADE",
                name=f"fk_{name}_entry_id_registration_entries",
            ),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("entry_id", "position", name=f"pk_{name}"),
    )


def _audit_triggers() -> None:
    """Make the audit log append-only and the chain head monotonic, in the database itself."""
    if op.get_bind().dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: "
                f"{operation} is not allowed'); END"
            )
        op.execute(
            "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
            "BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
            "WHEN NEW.seq < OLD.seq "
            "BEGIN SELECT RAISE(ABORT, 'audit_head can only move forward'); END"
        )
        return
    op.execute(
        """
        CREATE FUNCTION warden_audit_log_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION warden_audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_log_append_only()"
    )
    op.execute(
        """
        CREATE FUNCTION warden_audit_head_forward_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' THEN
                RAISE EXCEPTION 'audit_head cannot be deleted or truncated'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.seq < OLD.seq THEN
                RAISE EXCEPTION 'audit_head can only move forward (from % to %)', OLD.seq, NEW.seq
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head "
        "FOR EACH ROW EXECUTE FUNCTION warden_audit_head_forward_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_head_forward_only()"
    )


def upgrade() -> None:
    op.create_table(
        "registration_entries",
        sa.Column("id", EntryId, nullable=False),
        sa.Column("spiffe_id", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Text, nullable=False),
        sa.Column("similarity_key", sa.String(64), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("x509_svid_ttl", sa.Integer, nullable=False),
        sa.Column("jwt_svid_ttl", sa.Integer, nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("downstream", sa.Boolean, nullable=False),
        sa.Column("hint", sa.Text, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("last_delivered_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registration_entries"),
        sa.UniqueConstraint("similarity_key", name="uq_registration_entries_similarity_key"),
        sa.CheckConstraint(
            "x509_svid_ttl >= 0", name="ck_registration_entries_x509_svid_ttl_not_negative"
        ),
        sa.CheckConstraint(
            "jwt_svid_ttl >= 0", name="ck_registration_entries_jwt_svid_ttl_not_negative"
        ),
        sa.CheckConstraint(
            "length(trim(owner)) > 0", name="ck_registration_entries_owner_not_blank"
        ),
    )
    op.create_index("ix_registration_entries_spiffe_id", "registration_entries", ["spiffe_id"])
    op.create_index("ix_registration_entries_parent_id", "registration_entries", ["parent_id"])
    _entry_child(
        "entry_selectors",
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    _entry_child("entry_dns_names", sa.Column("value", sa.Text, nullable=False))
    _entry_child("entry_federates_with", sa.Column("trust_domain", sa.String(255), nullable=False))

    op.create_table(
        "entry_events",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("entry_id", EntryId, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entry_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_entry_events_created_at", "entry_events", ["created_at"])

    op.create_table(
        "attested_nodes",
        sa.Column("spiffe_id", sa.Text, nullable=False),
        sa.Column("attestation_type", sa.String(64), nullable=False),
        sa.Column("serial_number", sa.String(64), nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("new_serial_number", sa.String(64), nullable=False),
        sa.Column("new_expires_at", UtcDateTime, nullable=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("banned", sa.Boolean, nullable=False),
        sa.Column("can_reattest", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("spiffe_id", name="pk_attested_nodes"),
        sa.CheckConstraint("length(trim(owner)) > 0", name="ck_attested_nodes_owner_not_blank"),
    )
    op.create_table(
        "node_selectors",
        sa.Column(
            "spiffe_id",
            sa.Text,
            sa.ForeignKey(
                "attested_nodes.spiffe_id",
                ondelete="CASCADE",
                name="fk_node_selectors_spiffe_id_attested_nodes",
            ),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("spiffe_id", "position", name="pk_node_selectors"),
    )

    op.create_table(
        "join_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("alias_spiffe_id", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
        sa.Column("used_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_join_tokens"),
        sa.CheckConstraint("length(trim(owner)) > 0", name="ck_join_tokens_owner_not_blank"),
    )
    op.create_index("ix_join_tokens_expires_at", "join_tokens", ["expires_at"])

    op.create_table(
        "bundles",
        sa.Column("trust_domain", sa.String(255), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("trust_domain", name="pk_bundles"),
    )
    op.create_table(
        "ca_journals",
        sa.Column("server_id", sa.String(255), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("server_id", name="pk_ca_journals"),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("server_id", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_recorded_at", "audit_log", ["recorded_at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(
        audit_head,
        [{"id": 1, "seq": 0, "record_hash": ZERO_HASH, "updated_at": datetime.now(UTC)}],
    )
    _audit_triggers()


def downgrade() -> None:
    raise NotImplementedError(
        "the initial schema cannot be downgraded; restore a backup taken before the upgrade"
    )
