"""Aggregate snapshots (the latest per aggregate and fold), tenant-scoped like the events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

API_ROLE = "workflow_engine_api"
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    bind = op.get_bind()
    is_postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "snapshots",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", postgresql.JSONB() if is_postgres else sa.JSON(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "aggregate_id", "kind", name="pk_snapshots"),
    )
    if not is_postgres:
        return
    if not bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE}
    ).first():
        return
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON snapshots TO {API_ROLE}")
    op.execute("ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON snapshots TO {API_ROLE} "
        f"USING (tenant_id = {_CURRENT_TENANT}) WITH CHECK (tenant_id = {_CURRENT_TENANT})"
    )


def downgrade() -> None:
    op.drop_table("snapshots")
