"""The registry's check history: one row per health check of a registered service.

`services` keeps only the last check; the dashboard's services page draws each service's
latency over its recent checks. The checker (and a registration's first probe) writes a row
in the same transaction that updates the service, and deletes the rows beyond the newest
`REGISTRY_CHECK_HISTORY`; deregistering or removing a service deletes its rows. Reads are
newest first per service, an index range. The id is a UUID made by the writer: registration
writes in a tenant transaction, and the tenant role is given no sequences (migration 0006).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import UTCDateTime

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_checks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"],
            name="fk_service_checks_service_id_services", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_service_checks"),
    )  # fmt: skip
    op.create_index(
        "ix_service_checks_service_id_checked_at", "service_checks", ["service_id", "checked_at"]
    )
    confine_to_tenants(op, "service_checks")


def downgrade() -> None:
    op.drop_index("ix_service_checks_service_id_checked_at", "service_checks")
    op.drop_table("service_checks")
