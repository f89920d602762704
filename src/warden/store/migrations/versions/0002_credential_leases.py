"""Add the leases of brokered credentials and the JWT `jti` replay cache.

Revision ID: 0002_credential_leases
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warden.store.columns import UtcDateTime

revision = "0002_credential_leases"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

# Lease ids sort by code point on PostgreSQL, so that LIKE 'prefix%' can use the primary key.
LeaseId = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("lease_id", LeaseId, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("spiffe_id", sa.Text, nullable=False),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("server_id", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("max_expires_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Column("revoke_reason", sa.String(32), nullable=True),
        sa.Column("claimed_by", sa.Text, nullable=True),
        sa.Column("claimed_until", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("lease_id", name="pk_leases"),
    )
    op.create_index("ix_leases_expires_at", "leases", ["expires_at"])
    op.create_index("ix_leases_spiffe_id", "leases", ["spiffe_id"])

    op.create_table(
        "jti_replay",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_jti_replay"),
    )
    op.create_index("ix_jti_replay_expires_at", "jti_replay", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jti_replay_expires_at", table_name="jti_replay")
    op.drop_table("jti_replay")
    op.drop_index("ix_leases_spiffe_id", table_name="leases")
    op.drop_index("ix_leases_expires_at", table_name="leases")
    op.drop_table("leases")
