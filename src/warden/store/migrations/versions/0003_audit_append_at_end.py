"""Only append audit records after the last one, and only move the chain head forward.

The first revision's triggers refused UPDATE and DELETE, but SQLite's `INSERT OR REPLACE`
deletes the conflicting row without firing DELETE triggers, and the chain head could take a
new hash at the same sequence number. Together they let plain SQL rewrite a record and its
hashes. Now an insert must come after the highest sequence number, and every head update
must increase it.

Revision ID: 0003_audit_append_at_end
Revises: 0002_credential_leases
"""

from __future__ import annotations

from alembic import op

revision = "0003_audit_append_at_end"
down_revision = "0002_credential_leases"
branch_labels = None
depends_on = None

_SQLITE_APPEND_AT_END = (
    "CREATE TRIGGER audit_log_append_at_end BEFORE INSERT ON audit_log "
    "WHEN NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit_log) "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: a record can only follow the "
    "last one'); END"
)
_SQLITE_HEAD = (
    "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
    "WHEN NEW.seq {comparison} OLD.seq "
    "BEGIN SELECT RAISE(ABORT, 'audit_head can only move forward'); END"
)

_POSTGRES_HEAD = """
CREATE OR REPLACE FUNCTION warden_audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_head cannot be deleted or truncated'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.seq {comparison} OLD.seq THEN
        RAISE EXCEPTION 'audit_head can only move forward (from % to %)', OLD.seq, NEW.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_APPEND_AT_END)
        op.execute("DROP TRIGGER audit_head_forward_only")
        op.execute(_SQLITE_HEAD.format(comparison="<="))
        return
    op.execute(
        """
        CREATE FUNCTION warden_audit_log_append_at_end() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit_log) THEN
                RAISE EXCEPTION 'audit_log is append-only: record % does not follow the last one',
                    NEW.seq USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_at_end BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION warden_audit_log_append_at_end()"
    )
    op.execute(_POSTGRES_HEAD.format(comparison="<="))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_log_append_at_end")
        op.execute("DROP TRIGGER audit_head_forward_only")
        op.execute(_SQLITE_HEAD.format(comparison="<"))
        return
    op.execute("DROP TRIGGER audit_log_append_at_end ON audit_log")
    op.execute("DROP FUNCTION warden_audit_log_append_at_end()")
    op.execute(_POSTGRES_HEAD.format(comparison="<"))
