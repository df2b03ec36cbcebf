"""Projection checkpoints and the first read model: the catalogue of aggregates.

The catalogue is filled by replaying the log when the server starts (its checkpoint is
missing), so databases with events from before this revision get it too.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Read by the server's own (unconfined) connections only: no grant to the API role.
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("events_folded", sa.BigInteger(), nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_projection_checkpoints"),
    )
    op.create_table(
        "aggregates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_event_type", sa.String(200), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "aggregate_id", name="pk_aggregates"),
    )
    op.create_index(
        "ix_aggregates_tenant_id_aggregate_type_aggregate_id",
        "aggregates",
        ["tenant_id", "aggregate_type", "aggregate_id"],
    )
    confine_to_tenants(op, "aggregates")


def downgrade() -> None:
    op.drop_table("aggregates")
    op.drop_table("projection_checkpoints")
