"""Runs replayed from another run's step (engine/replays.py).

`workflow_runs` gains the run a replay replays and the step it executes again from, folded
from the `replay` block of its `WorkflowTriggered`. The trigger's start function needs no new
version: it writes the run's and steps' rows as the engine folded them, reused steps already
completed. The status read (`workflow_engine_read_run`) shows the link both ways (`replay_of`,
`replays`) and sums the LLM usage of the steps this run ran (attempt 1 or later), not of the
outputs a replay reused (attempt 0).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

IS_REPLAY = sa.text("replay_of_run_id IS NOT NULL")

# The status read of migration 0021, with `replay_of` and `replays` after `children`, and the
# LLM outputs of steps this run ran only.
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
                   FILTER (WHERE substr(sr.uses, 1, 4) = 'llm.' AND sr.status = 'completed'
                           AND sr.attempts > 0)
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
    LEFT JOIN LATERAL (
        SELECT array_to_json(array_agg(replay ORDER BY y.created_at, y.id)) AS replays
        FROM workflow_runs y
        CROSS JOIN LATERAL (
            SELECT y.id AS workflow_id, y.replay_from_step AS from_step, y.status,
                   workflow_engine_json_time(y.created_at) AS created_at
        ) replay
        WHERE y.replay_of_run_id = r.id AND y.tenant_id = p_tenant
    ) rp ON true
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
               coalesce(k.children, '[]'::json) AS children,
               CASE WHEN r.replay_of_run_id IS NOT NULL THEN (
                   SELECT o FROM (SELECT r.replay_of_run_id AS workflow_id,
                                         r.replay_from_step AS from_step) o
               ) END AS replay_of,
               coalesce(rp.replays, '[]'::json) AS replays
    ) doc
    WHERE r.id = p_run AND r.tenant_id = p_tenant;
END
$fn$
"""


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("replay_of_run_id", sa.Uuid(), nullable=True))
    op.add_column("workflow_runs", sa.Column("replay_from_step", sa.String(64), nullable=True))
    op.create_index(
        "ix_workflow_runs_replay_of_run_id", "workflow_runs", ["replay_of_run_id"],
        postgresql_where=IS_REPLAY, sqlite_where=IS_REPLAY,
    )  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(READ_RUN)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(_read_run_before())
    op.drop_index("ix_workflow_runs_replay_of_run_id", "workflow_runs")
    # Not a batch: recreating the table on SQLite would drop the triggers other migrations
    # put on it; SQLite drops a column itself since 3.35.
    op.drop_column("workflow_runs", "replay_from_step")
    op.drop_column("workflow_runs", "replay_of_run_id")


def _read_run_before() -> str:
    """Migration 0021's status read (a module whose name Python cannot import by statement)."""
    path = Path(__file__).with_name("0021_child_runs.py")
    spec = importlib.util.spec_from_file_location("migration_0021", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.READ_RUN)
