"""Approval requests of approval steps, for GET /api/v1/approvals.

One row per attempt of an `approval` step, written when it begins waiting: what is proposed,
the message, when it was asked and when it expires (with the decision the timeout makes and
what a rejection does), then the decision once made — approved or rejected, by whom (an actor,
or `timeout`), when, the comment, and the data the step goes on with. Undecided rows are
indexed by tenant and age for the list of what waits.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import JsonDocument, UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

UNDECIDED = sa.text("decision IS NULL")


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("proposal", JsonDocument, nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("on_timeout", sa.String(20), nullable=True),
        sa.Column("on_reject", sa.String(20), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("decision", sa.String(20), nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("data", JsonDocument, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint(
            "run_id", "step_id", "attempt", name="uq_approvals_run_id_step_id_attempt"
        ),
    )
    op.create_index(
        "ix_approvals_undecided", "approvals", ["tenant_id", "requested_at", "id"],
        postgresql_where=UNDECIDED, sqlite_where=UNDECIDED,
    )  # fmt: skip
    confine_to_tenants(op, "approvals")


def downgrade() -> None:
    op.drop_index("ix_approvals_undecided", "approvals")
    op.drop_table("approvals")
