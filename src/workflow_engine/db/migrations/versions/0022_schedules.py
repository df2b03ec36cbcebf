"""Schedules: a workflow started on a cron expression or an interval.

A row is the schedule's current state; the event log keeps what changed (created, updated,
paused, resumed, deleted, ticks missed or failing), on the schedule's aggregate. `next_fire_at`
is the tick to fire next (null while paused, or when no tick remains): every server process
looks for due rows, and the one that locks a row first fires its ticks and moves it on in the
same transaction as the runs it starts, so each tick starts one run however many look.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import JsonDocument, UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

DUE = sa.text("next_fire_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("data", JsonDocument, nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("start_at", UTCDateTime(), nullable=True),
        sa.Column("end_at", UTCDateTime(), nullable=True),
        sa.Column("catch_up", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", UTCDateTime(), nullable=True),
        sa.Column("last_fired_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_schedules_tenant_id_name"),
    )
    op.create_index(
        "ix_schedules_next_fire_at", "schedules", ["next_fire_at"],
        postgresql_where=DUE, sqlite_where=DUE,
    )  # fmt: skip
    confine_to_tenants(op, "schedules")


def downgrade() -> None:
    op.drop_index("ix_schedules_next_fire_at", "schedules")
    op.drop_table("schedules")
