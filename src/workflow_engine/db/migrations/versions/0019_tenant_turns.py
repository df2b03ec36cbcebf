"""When each tenant's work was last claimed, so that workers take turns between tenants.

A claim ranks ready tasks by their turn within their tenant (each tenant's first, then each
one's second, ...) and, within a turn, by how long ago the tenant was last served (never
first): a tenant with a backlog of thousands cannot keep another tenant's next task waiting
behind it. Each claim records the time for the tenants it served (`engine/queue.py`).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_turns",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("last_claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_turns"),
    )
    confine_to_tenants(op, "tenant_turns")


def downgrade() -> None:
    op.drop_table("tenant_turns")
