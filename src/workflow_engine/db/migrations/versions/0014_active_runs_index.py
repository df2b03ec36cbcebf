"""An index of the runs still going, so that `/metrics` counts them without a scan.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running', 'cancelling')")


def upgrade() -> None:
    # Partial: finished runs, the vast majority, are not in it and cost no index writes.
    op.create_index(
        "ix_workflow_runs_active_status", "workflow_runs", ["status"],
        postgresql_where=ACTIVE, sqlite_where=ACTIVE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_active_status", "workflow_runs")
