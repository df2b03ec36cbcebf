"""The service registry: registered services and their tags.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workflow_engine.db.tenant_tables import confine_to_tenants

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    is_postgres = op.get_bind().dialect.name == "postgresql"
    json = postgresql.JSONB() if is_postgres else sa.JSON()
    moment = sa.DateTime(timezone=True)
    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("health_check_url", sa.String(2048), nullable=True),
        sa.Column("metadata", json, nullable=False),
        sa.Column("tags", json, nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("consecutive_successes", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_check_at", moment, nullable=True),
        sa.Column("last_check_latency_ms", sa.Float(), nullable=True),
        sa.Column("last_check_error", sa.Text(), nullable=True),
        sa.Column("last_heartbeat_at", moment, nullable=True),
        sa.Column("last_alive_at", moment, nullable=False),
        sa.Column("next_check_at", moment, nullable=True),
        sa.Column("status_changed_at", moment, nullable=False),
        sa.Column("registered_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.UniqueConstraint("tenant_id", "name", "url", name="uq_services_tenant_id_name_url"),
    )
    op.create_index("ix_services_tenant_id", "services", ["tenant_id"])
    op.create_index("ix_services_next_check_at", "services", ["next_check_at"])
    op.create_table(
        "service_tags",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_service_tags_service_id_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("service_id", "tag", name="pk_service_tags"),
    )
    op.create_index("ix_service_tags_tenant_id_tag", "service_tags", ["tenant_id", "tag"])
    confine_to_tenants(op, "services", "service_tags")


def downgrade() -> None:
    op.drop_table("service_tags")
    op.drop_table("services")
