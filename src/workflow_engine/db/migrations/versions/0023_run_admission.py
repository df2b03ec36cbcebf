"""Admission: runs that wait queued for a slot (`MAX_RUNNING_PER_TENANT`, a workflow's
`concurrency`), and tenants' weights in the turns claims take (`TENANT_WEIGHTS`): a tenant of
weight w keeps its place in the round until it has taken w tasks (`taken` counts them).

A run under a limit starts with one `:admit` task instead of its first steps. The worker that
claims it writes the run's row in `run_admissions` (waiting), then admits, oldest first, every
waiting run of the tenant that fits the limits — enqueuing its first steps and deleting its
`:admit` task — and parks its own `:admit` task (due never) if its run still waits. A row is
admitted from then until the run ends: a trigger deletes it and wakes the tenant's oldest
parked `:admit` task, whose claim admits what fits now. On PostgreSQL the pass and the
trigger take the same advisory lock on the tenant, so no freed slot goes unnoticed.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

ENDED = "('completed', 'failed', 'cancelled')"
# Kept in step with engine/queue.py (`ADMIT`, `NEVER`, `NOTIFY_CHANNEL`) and
# engine/admission.py (`LOCK_CLASS`).
ADMIT, CHANNEL, LOCK_CLASS = "':admit'", "'workflow_engine_tasks'", 1464161027
NEVER_PG, NEVER_SQLITE = "'9999-01-01 00:00:00+00'::timestamptz", "'9999-01-01'"

PG_FUNCTION = f"""
CREATE FUNCTION workflow_engine_release_admission() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    v_admitted boolean;
BEGIN
    DELETE FROM run_admissions WHERE run_id = NEW.id RETURNING admitted INTO v_admitted;
    IF NOT coalesce(v_admitted, false) THEN  -- it held no slot: nothing freed
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_CLASS}, hashtext(NEW.tenant_id::text));
    UPDATE tasks SET available_at = created_at
    WHERE id = (SELECT id FROM tasks
                WHERE tenant_id = NEW.tenant_id AND step_id = {ADMIT}
                  AND lease_owner IS NULL AND available_at >= {NEVER_PG}
                ORDER BY priority DESC, created_at LIMIT 1);
    IF FOUND THEN
        PERFORM pg_notify({CHANNEL}, '');
    END IF;
    RETURN NULL;
END
$fn$
"""
PG_TRIGGER = f"""
CREATE TRIGGER run_ended_release_admission AFTER UPDATE OF status ON workflow_runs
FOR EACH ROW WHEN (NEW.gated AND NEW.status IN {ENDED} AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION workflow_engine_release_admission()
"""
SQLITE_TRIGGER = f"""
CREATE TRIGGER run_ended_release_admission AFTER UPDATE OF status ON workflow_runs
FOR EACH ROW WHEN NEW.gated AND NEW.status IN {ENDED} AND OLD.status IS NOT NEW.status
BEGIN
    UPDATE tasks SET available_at = created_at
    WHERE id = (SELECT id FROM tasks
                WHERE tenant_id = NEW.tenant_id AND step_id = {ADMIT}
                  AND lease_owner IS NULL AND available_at >= {NEVER_SQLITE}
                ORDER BY priority DESC, created_at LIMIT 1)
      AND EXISTS (SELECT 1 FROM run_admissions WHERE run_id = NEW.id AND admitted);
    DELETE FROM run_admissions WHERE run_id = NEW.id;
END
"""


def upgrade() -> None:
    op.add_column(
        "tenant_turns", sa.Column("weight", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column(
        "tenant_turns", sa.Column("taken", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "workflow_runs", sa.Column("gated", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "run_admissions",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("concurrency_key", sa.String(200), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("counts_toward_cap", sa.Boolean(), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_admissions"),
    )
    op.create_index("ix_run_admissions_tenant_id", "run_admissions", ["tenant_id", "admitted"])
    confine_to_tenants(op, "run_admissions")
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(PG_FUNCTION)
        op.get_bind().exec_driver_sql(PG_TRIGGER)
    else:
        op.get_bind().exec_driver_sql(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS run_ended_release_admission ON workflow_runs")
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_release_admission()")
    else:
        op.execute("DROP TRIGGER IF EXISTS run_ended_release_admission")
    op.drop_index("ix_run_admissions_tenant_id", "run_admissions")
    op.drop_table("run_admissions")
    op.drop_column("workflow_runs", "gated")
    op.drop_column("tenant_turns", "taken")
    op.drop_column("tenant_turns", "weight")
