"""The index of runs still going covers `waiting` runs too (durable timers, events, children).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEX = "ix_workflow_runs_active_status"
BEFORE = sa.text("status IN ('queued', 'running', 'cancelling')")
# The planner uses a partial index only for a query whose condition implies the index's:
# this list must match `engine.runs.ACTIVE_STATUSES`.
AFTER = sa.text("status IN ('queued', 'running', 'waiting', 'cancelling')")


def _recreate(where: sa.TextClause) -> None:
    op.drop_index(INDEX, "workflow_runs")
    op.create_index(INDEX, "workflow_runs", ["status"], postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    _recreate(AFTER)


def downgrade() -> None:
    _recreate(BEFORE)
