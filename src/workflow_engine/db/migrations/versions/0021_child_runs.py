"""Child runs: a run started by a parent run's `workflow` step, linked both ways.

`workflow_runs` gains the parent's run and step. Two triggers act when a run ends, whichever
path ended it (a worker's transition, a cancel through the API, a deadline):

- a child that ends makes its parent step's task due now (the parent step waits for it with
  its task in the queue, holding no worker), and on PostgreSQL tells the workers (NOTIFY);
- a parent that fails or is cancelled queues a `:cancel` task for each of its children still
  going, which a worker carries out as a cancel of that child (and so on down).

The status read (`workflow_engine_read_run`) shows the parent and the children.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

ENDED = "('completed', 'failed', 'cancelled')"
GOING = "('queued', 'running', 'waiting')"
HAS_PARENT = sa.text("parent_run_id IS NOT NULL")
# Kept in step with engine/queue.py (`CANCEL`, `RUN_LEVEL_PRIORITY`, `NOTIFY_CHANNEL`).
CANCEL_TASK, RUN_LEVEL_PRIORITY, CHANNEL = "':cancel'", 1000, "'workflow_engine_tasks'"

PG_FUNCTION = f"""
CREATE FUNCTION workflow_engine_run_ended_links() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.parent_run_id IS NOT NULL THEN
        -- No condition on the lease: a parent step checking on its child holds its task's
        -- row, and this waits for that check to commit, then wakes the task it put back.
        UPDATE tasks SET available_at = clock_timestamp()
        WHERE run_id = NEW.parent_run_id AND step_id = NEW.parent_step_id;
        PERFORM pg_notify({CHANNEL}, '');
    END IF;
    IF NEW.status IN ('failed', 'cancelled') THEN
        INSERT INTO tasks (id, tenant_id, run_id, step_id, attempt, available_at, priority,
                           created_at, claims)
        SELECT gen_random_uuid(), c.tenant_id, c.id, {CANCEL_TASK}, 1, clock_timestamp(),
               {RUN_LEVEL_PRIORITY}, clock_timestamp(), 0
        FROM workflow_runs c
        WHERE c.parent_run_id = NEW.id AND c.status IN {GOING}
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM pg_notify({CHANNEL}, '');
        END IF;
    END IF;
    RETURN NULL;
END
$fn$
"""
PG_TRIGGER = f"""
CREATE TRIGGER run_ended_links AFTER UPDATE OF status ON workflow_runs
FOR EACH ROW WHEN (NEW.status IN {ENDED} AND OLD.status IS DISTINCT FROM NEW.status
                  AND (NEW.parent_run_id IS NOT NULL OR NEW.status <> 'completed'))
EXECUTE FUNCTION workflow_engine_run_ended_links()
"""
# SQLite's times as SQLAlchemy stores them: `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
SQLITE_TRIGGERS = (
    f"""
CREATE TRIGGER run_ended_wake_parent AFTER UPDATE OF status ON workflow_runs
FOR EACH ROW WHEN NEW.status IN {ENDED} AND OLD.status IS NOT NEW.status
              AND NEW.parent_run_id IS NOT NULL
BEGIN
    UPDATE tasks SET available_at = {_SQLITE_NOW}
    WHERE run_id = NEW.parent_run_id AND step_id = NEW.parent_step_id;
END
""",
    f"""
CREATE TRIGGER run_ended_cancel_children AFTER UPDATE OF status ON workflow_runs
FOR EACH ROW WHEN NEW.status IN ('failed', 'cancelled') AND OLD.status IS NOT NEW.status
BEGIN
    INSERT OR IGNORE INTO tasks (id, tenant_id, run_id, step_id, attempt, available_at,
                                 priority, created_at, claims)
    SELECT lower(hex(randomblob(16))), c.tenant_id, c.id, {CANCEL_TASK}, 1, {_SQLITE_NOW},
           {RUN_LEVEL_PRIORITY}, {_SQLITE_NOW}, 0
    FROM workflow_runs c
    WHERE c.parent_run_id = NEW.id AND c.status IN {GOING};
END
""",
)

# The status read of migration 0017, with `parent` and `children` after `error`.
READ_RUN = r"""
CREATE OR REPLACE FUNCTION workflow_engine_read_run(
    p_tenant uuid, p_confine boolean, p_run uuid, OUT document text, OUT llm_outputs text)
LANGUAGE plpgsql SET app.tenant_id = '' AS $fn$
BEGIN
    IF p_confine THEN
        SET LOCAL ROLE workflow_engine_api;
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
    END IF;
    SELECT row_to_json(doc)::text, s.llm::text
    INTO document, llm_outputs
    FROM workflow_runs r
    LEFT JOIN LATERAL (
        SELECT array_to_json(array_agg(step ORDER BY sr.position)) AS steps,
               json_agg(sr.output ORDER BY sr.position)
                   FILTER (WHERE substr(sr.uses, 1, 4) = 'llm.' AND sr.status = 'completed')
                   AS llm
        FROM step_runs sr
        CROSS JOIN LATERAL (
            SELECT sr.step_id AS id, sr.uses, sr.status, sr.attempts,
                   workflow_engine_json_time(sr.started_at) AS started_at,
                   workflow_engine_json_time(sr.finished_at) AS finished_at,
                   workflow_engine_json_ms(sr.started_at, sr.finished_at) AS duration_ms,
                   workflow_engine_json_time(sr.next_attempt_at) AS next_attempt_at,
                   sr.error
        ) step
        WHERE sr.run_id = r.id AND sr.tenant_id = p_tenant
    ) s ON true
    LEFT JOIN LATERAL (
        SELECT array_to_json(array_agg(child ORDER BY c.created_at, c.id)) AS children
        FROM workflow_runs c
        CROSS JOIN LATERAL (
            SELECT c.id AS workflow_id, c.workflow_name, c.parent_step_id AS step, c.status
        ) child
        WHERE c.parent_run_id = r.id AND c.tenant_id = p_tenant
    ) k ON true
    CROSS JOIN LATERAL (
        SELECT r.id AS workflow_id, r.workflow_name, r.workflow_version AS version, r.status,
               workflow_engine_json_time(r.created_at) AS created_at,
               workflow_engine_json_time(r.started_at) AS started_at,
               workflow_engine_json_time(r.finished_at) AS finished_at,
               (SELECT p FROM (SELECT r.steps_done AS completed, r.steps_total AS total) p)
                   AS progress,
               coalesce(s.steps, '[]'::json) AS steps,
               r.error,
               CASE WHEN r.parent_run_id IS NOT NULL THEN (
                   SELECT p FROM (SELECT r.parent_run_id AS workflow_id,
                                         r.parent_step_id AS step) p
               ) END AS parent,
               coalesce(k.children, '[]'::json) AS children
    ) doc
    WHERE r.id = p_run AND r.tenant_id = p_tenant;
END
$fn$
"""


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("parent_run_id", sa.Uuid(), nullable=True))
    op.add_column("workflow_runs", sa.Column("parent_step_id", sa.String(64), nullable=True))
    op.create_index(
        "ix_workflow_runs_parent_run_id", "workflow_runs", ["parent_run_id"],
        postgresql_where=HAS_PARENT, sqlite_where=HAS_PARENT,
    )  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        # As written: `:cancel` is SQL text here, not a bind parameter.
        for statement in (PG_FUNCTION, PG_TRIGGER, READ_RUN):
            op.get_bind().exec_driver_sql(statement)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.get_bind().exec_driver_sql(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS run_ended_links ON workflow_runs")
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_run_ended_links()")
        op.get_bind().exec_driver_sql(_read_run_before())
    else:
        op.execute("DROP TRIGGER IF EXISTS run_ended_wake_parent")
        op.execute("DROP TRIGGER IF EXISTS run_ended_cancel_children")
    op.drop_index("ix_workflow_runs_parent_run_id", "workflow_runs")
    # Not a batch: recreating the table on SQLite would drop the triggers other migrations
    # put on it; SQLite drops a column itself since 3.35.
    op.drop_column("workflow_runs", "parent_step_id")
    op.drop_column("workflow_runs", "parent_run_id")


def _read_run_before() -> str:
    """Migration 0017's status read (a module whose name Python cannot import by statement)."""
    path = Path(__file__).with_name("0017_one_statement_reads.py")
    spec = importlib.util.spec_from_file_location("migration_0017", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.READ_RUN)
