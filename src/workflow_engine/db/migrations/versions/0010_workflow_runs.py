"""Workflow runs: the run and step read models, idempotency keys and the task queue.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workflow_engine.db.tenant_tables import confine_to_tenants

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Tables the API's tenant transactions touch (the queue is also written when a run is
# triggered or cancelled); each gets the tenant role's grants and the tenant policy.
TENANT_TABLES = ("workflow_runs", "step_runs", "idempotency_keys", "tasks")


def upgrade() -> None:
    bind = op.get_bind()
    is_postgres = bind.dialect.name == "postgresql"
    json_type = postgresql.JSONB() if is_postgres else sa.JSON()
    moment = sa.DateTime(timezone=True)
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("input", json_type, nullable=False),
        sa.Column("output", json_type, nullable=True),
        sa.Column("error", json_type, nullable=True),
        sa.Column("definition", json_type, nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("started_at", moment, nullable=True),
        sa.Column("finished_at", moment, nullable=True),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_runs"),
    )
    op.create_index(
        "ix_workflow_runs_tenant_id_created_at", "workflow_runs", ["tenant_id", "created_at"]
    )
    op.create_index("ix_workflow_runs_tenant_id_status", "workflow_runs", ["tenant_id", "status"])
    op.create_table(
        "step_runs",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),  # order in the definition
        sa.Column("uses", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("output", json_type, nullable=True),
        sa.Column("error", json_type, nullable=True),
        sa.Column("next_attempt_at", moment, nullable=True),
        sa.Column("started_at", moment, nullable=True),
        sa.Column("finished_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step_id", name="pk_step_runs"),
    )
    op.create_index("ix_step_runs_tenant_id", "step_runs", ["tenant_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key", name="pk_idempotency_keys"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        # A step's id, or the run-level kinds `:finish` and `:deadline`.
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("available_at", moment, nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", moment, nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("trace_context", json_type, nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("run_id", "step_id", "attempt", name="uq_tasks_run_id_step_id_attempt"),
    )
    op.create_index("ix_tasks_available_at", "tasks", ["available_at"])
    op.create_index("ix_tasks_lease_expires_at", "tasks", ["lease_expires_at"])
    confine_to_tenants(op, *TENANT_TABLES)


def downgrade() -> None:
    for table in ("tasks", "idempotency_keys", "step_runs", "workflow_runs"):
        op.drop_table(table)
