"""The event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    is_postgres = op.get_bind().dialect.name == "postgresql"
    json_type = postgresql.JSONB() if is_postgres else sa.JSON()
    # The writer's transaction id: readers stop below the oldest in-flight one, since positions
    # are taken before commit (pitfall 4 in docs/architecture.md).
    txid_default = sa.text("(pg_current_xact_id()::text::bigint)") if is_postgres else "0"
    op.create_table(
        "events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("data", json_type, nullable=False),
        sa.Column("metadata", json_type, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False, server_default=txid_default),
        sa.PrimaryKeyConstraint("position", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint(
            "tenant_id", "aggregate_id", "version", name="uq_events_tenant_id_aggregate_id_version"
        ),
    )
    op.create_index("ix_events_tenant_id_position", "events", ["tenant_id", "position"])
    op.create_index("ix_events_txid_position", "events", ["txid", "position"])


def downgrade() -> None:
    op.drop_table("events")
