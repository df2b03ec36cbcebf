"""Per-call LLM usage, for GET /api/v1/usage and daily budgets.

One row per LLM call a step made (answered, or failed after spending tokens): who, which run
and step, which provider and model answered, the tokens, the estimated cost (null: the model
has no price) and the UTC day. A budget check sums a tenant's rows of one day, an index range
(index-only on PostgreSQL, which keeps the summed columns in the index).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_usage",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_usage"),
    )  # fmt: skip
    op.create_index(
        "ix_llm_usage_tenant_id_day", "llm_usage", ["tenant_id", "day"],
        postgresql_include=["prompt_tokens", "completion_tokens", "cost_usd"],
    )  # fmt: skip
    op.create_index("ix_llm_usage_run_id", "llm_usage", ["run_id"])
    confine_to_tenants(op, "llm_usage")


def downgrade() -> None:
    op.drop_index("ix_llm_usage_run_id", "llm_usage")
    op.drop_index("ix_llm_usage_tenant_id_day", "llm_usage")
    op.drop_table("llm_usage")
