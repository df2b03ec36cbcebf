"""`wait.event` steps: what each waits for, and which event each took.

A row is armed (`matched_position` null) while its step waits with its task put back in the
queue: an event appended for that aggregate and type wakes the task. It records the event the
step took once one matched, so a run's steps never take the same event twice and a step whose
worker died before recording its outcome takes the same event again. Armed rows go when the
run ends (a trigger, whichever path ended it); matched ones stay with the run's history.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.tenant_tables import confine_to_tenants
from workflow_engine.db.types import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ARMED = sa.text("matched_position IS NULL")
ENDED = "('completed', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "event_waits",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("matched_position", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_id", name="pk_event_waits"),
    )
    op.create_index(
        "ix_event_waits_armed", "event_waits", ["tenant_id", "aggregate_id", "event_type"],
        postgresql_where=ARMED, sqlite_where=ARMED,
    )  # fmt: skip
    confine_to_tenants(op, "event_waits")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION workflow_engine_disarm_event_waits() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "DELETE FROM event_waits WHERE run_id = NEW.id AND matched_position IS NULL; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER event_waits_disarm AFTER UPDATE OF status ON workflow_runs "
            f"FOR EACH ROW WHEN (NEW.status IN {ENDED} AND OLD.status IS DISTINCT FROM "
            "NEW.status) EXECUTE FUNCTION workflow_engine_disarm_event_waits()"
        )
    else:
        op.execute(
            "CREATE TRIGGER event_waits_disarm AFTER UPDATE OF status ON workflow_runs "
            f"FOR EACH ROW WHEN NEW.status IN {ENDED} AND OLD.status IS NOT NEW.status "
            "BEGIN DELETE FROM event_waits WHERE run_id = NEW.id AND matched_position IS NULL; "
            "END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS event_waits_disarm ON workflow_runs"
               if op.get_bind().dialect.name == "postgresql"
               else "DROP TRIGGER IF EXISTS event_waits_disarm")  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_disarm_event_waits()")
    op.drop_index("ix_event_waits_armed", "event_waits")
    op.drop_table("event_waits")
