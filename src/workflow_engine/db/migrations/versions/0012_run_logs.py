"""Run logs: a read model of what each run said, from its events (node logs and lifecycle).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

API_ROLE = "workflow_engine_api"
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    bind = op.get_bind()
    is_postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "run_logs",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        # The event the entry came from and its place in it: a stable id across rebuilds.
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fields", postgresql.JSONB() if is_postgres else sa.JSON(), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "position", "entry", name="pk_run_logs"),
    )
    op.create_index("ix_run_logs_tenant_id", "run_logs", ["tenant_id"])
    if not is_postgres:
        return
    if not bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE}
    ).first():
        return
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON run_logs TO {API_ROLE}")
    op.execute("ALTER TABLE run_logs ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON run_logs TO {API_ROLE} "
        f"USING (tenant_id = {_CURRENT_TENANT}) WITH CHECK (tenant_id = {_CURRENT_TENANT})"
    )


def downgrade() -> None:
    op.drop_table("run_logs")
