"""A run's version on its row, and on PostgreSQL the functions that start a run and record a
run transition, each in one round trip.

`workflow_runs.version` is the version of the run's aggregate (how many events it has): the
engine's optimistic concurrency compares it. `workflow_engine_run_transition(jsonb)` does what
`engine/store.py` describes for one transition — check the expected version and the lease,
append the events, write the read-model rows the engine folded, the log entries and the
aggregate catalogue, drop and enqueue tasks, notify — and answers with a JSON document.
`workflow_engine_start_run(jsonb)` does the same for a trigger: the idempotency key, the
`WorkflowTriggered` event, the run's rows as the engine folded them, its first log entry and
catalogue row, its first tasks, the notifications.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Kept in step with engine/store.py, which builds the document and reads the answer.
TRANSITION = r"""
CREATE OR REPLACE FUNCTION workflow_engine_run_transition(t jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    v_run uuid := (t->>'run_id')::uuid;
    v_tenant uuid := (t->>'tenant_id')::uuid;
    v_at timestamptz := (t->>'recorded_at')::timestamptz;
    v_version integer;
    v_status text;
    v_positions bigint[];
    v_count integer;
    v_leased jsonb;
    v_queued integer;
BEGIN
    SELECT version, status INTO v_version, v_status FROM workflow_runs WHERE id = v_run FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'gone');
    END IF;
    -- Another transition got there first, unless all it appended were log entries (which
    -- change no row the decision was made from).
    IF t->'expected_version' <> 'null'::jsonb
       AND (t->>'expected_version')::integer <> v_version
       AND EXISTS (SELECT 1 FROM events
                   WHERE tenant_id = v_tenant AND aggregate_id = v_run::text
                     AND version > (t->>'expected_version')::integer
                     AND event_type <> 'StepLogged') THEN
        RETURN jsonb_build_object('status', 'conflict', 'version', v_version,
                                  'run_status', v_status);
    END IF;
    IF t->'finish_task' <> 'null'::jsonb THEN
        DELETE FROM tasks
        WHERE id = (t->'finish_task'->>'id')::uuid AND lease_owner = t->'finish_task'->>'owner';
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 'lost', 'run_status', v_status);
        END IF;
    END IF;
    IF t->'renew_task' <> 'null'::jsonb THEN
        UPDATE tasks
        SET lease_expires_at = clock_timestamp()
                               + make_interval(secs => (t->>'lease_seconds')::float8)
        WHERE id = (t->'renew_task'->>'id')::uuid AND lease_owner = t->'renew_task'->>'owner';
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 'lost', 'run_status', v_status);
        END IF;
    END IF;

    WITH appended AS (
        INSERT INTO events (event_id, tenant_id, aggregate_type, aggregate_id, version,
                            event_type, schema_version, data, metadata, recorded_at)
        SELECT (e->>'event_id')::uuid, v_tenant, 'runs', v_run::text, v_version + n::integer,
               e->>'type', 1, e->'data', e->'metadata', v_at
        FROM jsonb_array_elements(t->'events') WITH ORDINALITY AS x(e, n)
        RETURNING version, position
    )
    SELECT array_agg(position ORDER BY version) INTO v_positions FROM appended;
    v_count := coalesce(array_length(v_positions, 1), 0);

    IF v_count > 0 THEN
        INSERT INTO aggregates AS a (tenant_id, aggregate_id, aggregate_type, version,
                                     last_event_type, last_position, created_at, updated_at)
        VALUES (v_tenant, v_run::text, 'runs', v_version + v_count,
                t->'events'->(v_count - 1)->>'type', v_positions[v_count], v_at, v_at)
        ON CONFLICT (tenant_id, aggregate_id) DO UPDATE
        SET version = excluded.version, last_event_type = excluded.last_event_type,
            last_position = excluded.last_position, updated_at = excluded.updated_at
        WHERE a.version < excluded.version;
    END IF;

    UPDATE workflow_runs r
    SET version = v_version + v_count,
        status = c.status, output = c.output, error = c.error, steps_done = c.steps_done,
        started_at = c.started_at, finished_at = c.finished_at, updated_at = c.updated_at
    FROM jsonb_to_record(t->'run') AS c(status text, output jsonb, error jsonb,
                                        steps_done integer, started_at timestamptz,
                                        finished_at timestamptz, updated_at timestamptz)
    WHERE r.id = v_run AND t->'run' <> 'null'::jsonb;
    IF t->'run' = 'null'::jsonb AND v_count > 0 THEN
        UPDATE workflow_runs SET version = v_version + v_count WHERE id = v_run;
    END IF;

    UPDATE step_runs s
    SET status = c.status, attempts = c.attempts, output = c.output, error = c.error,
        next_attempt_at = c.next_attempt_at, started_at = c.started_at,
        finished_at = c.finished_at
    FROM jsonb_to_recordset(t->'steps') AS c(step_id text, status text, attempts integer,
                                             output jsonb, error jsonb,
                                             next_attempt_at timestamptz,
                                             started_at timestamptz, finished_at timestamptz)
    WHERE s.run_id = v_run AND s.step_id = c.step_id;

    INSERT INTO run_logs (run_id, position, entry, tenant_id, step_id, attempt, level, message,
                          fields, logged_at)
    SELECT v_run, v_positions[c.event], c.entry, v_tenant, c.step_id, c.attempt, c.level,
           c.message, c.fields, c.logged_at
    FROM jsonb_to_recordset(t->'logs') AS c(event integer, entry integer, step_id text,
                                            attempt integer, level text, message text,
                                            fields jsonb, logged_at timestamptz);

    DELETE FROM tasks
    WHERE run_id = v_run AND lease_owner IS NULL
      AND step_id IN (SELECT jsonb_array_elements_text(t->'drop_steps'));
    IF (t->>'drop_deadline')::boolean THEN
        DELETE FROM tasks WHERE run_id = v_run AND step_id = ':deadline';
    END IF;

    WITH queued AS (
        INSERT INTO tasks (id, tenant_id, run_id, step_id, attempt, available_at, priority,
                           correlation_id, trace_context, created_at, lease_owner,
                           lease_expires_at, claims)
        SELECT c.id, v_tenant, v_run, c.step_id, c.attempt, coalesce(c.available_at, v_at),
               c.priority, c.correlation_id, c.trace_context, v_at,
               CASE WHEN c.leased THEN t->>'owner' END,
               CASE WHEN c.leased THEN clock_timestamp()
                    + make_interval(secs => (t->>'lease_seconds')::float8) END,
               CASE WHEN c.leased THEN 1 ELSE 0 END
        FROM jsonb_to_recordset(t->'tasks') AS c(id uuid, step_id text, attempt integer,
                                                 available_at timestamptz, priority integer,
                                                 correlation_id text, trace_context jsonb,
                                                 leased boolean)
        ON CONFLICT (run_id, step_id, attempt) DO NOTHING
        RETURNING id, step_id, attempt, lease_owner, claims, available_at
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', id, 'step_id', step_id, 'attempt', attempt, 'claims', claims,
               'available_at', available_at)) FILTER (WHERE lease_owner IS NOT NULL), '[]'),
           count(*) FILTER (WHERE lease_owner IS NULL)
    INTO v_leased, v_queued FROM queued;

    IF v_count > 0 THEN
        PERFORM pg_notify('workflow_engine_events', '');
    END IF;
    IF v_queued > 0 THEN
        PERFORM pg_notify('workflow_engine_tasks', '');
    END IF;
    RETURN jsonb_build_object('status', 'ok', 'version', v_version + v_count,
                              'run_status', coalesce(t->'run'->>'status', v_status),
                              'positions', to_jsonb(coalesce(v_positions, '{}')),
                              'leased', v_leased);
END
$fn$
"""


START = r"""
CREATE OR REPLACE FUNCTION workflow_engine_start_run(t jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    v_run uuid := (t->>'run_id')::uuid;
    v_tenant uuid := (t->>'tenant_id')::uuid;
    v_at timestamptz := (t->>'recorded_at')::timestamptz;
    v_hash text;
    v_earlier uuid;
    v_position bigint;
BEGIN
    IF t->'idempotency_key' <> 'null'::jsonb THEN
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, run_id, created_at)
        VALUES (v_tenant, t->>'idempotency_key', t->>'request_hash', v_run, v_at)
        ON CONFLICT (tenant_id, key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT request_hash, run_id INTO v_hash, v_earlier FROM idempotency_keys
            WHERE tenant_id = v_tenant AND key = t->>'idempotency_key';
            RETURN jsonb_build_object('status', 'exists', 'run_id', v_earlier,
                                      'request_hash', v_hash);
        END IF;
    END IF;

    INSERT INTO events (event_id, tenant_id, aggregate_type, aggregate_id, version, event_type,
                        schema_version, data, metadata, recorded_at)
    VALUES ((t->>'event_id')::uuid, v_tenant, 'runs', v_run::text, 1, 'WorkflowTriggered', 1,
            t->'data', t->'metadata', v_at)
    RETURNING position INTO v_position;
    INSERT INTO aggregates (tenant_id, aggregate_id, aggregate_type, version, last_event_type,
                            last_position, created_at, updated_at)
    VALUES (v_tenant, v_run::text, 'runs', 1, 'WorkflowTriggered', v_position, v_at, v_at);
    INSERT INTO workflow_runs SELECT * FROM jsonb_populate_record(NULL::workflow_runs, t->'run');
    INSERT INTO step_runs SELECT * FROM jsonb_populate_recordset(NULL::step_runs, t->'steps');
    INSERT INTO run_logs (run_id, position, entry, tenant_id, step_id, attempt, level, message,
                          fields, logged_at)
    SELECT v_run, v_position, c.entry, v_tenant, c.step_id, c.attempt, c.level, c.message,
           c.fields, c.logged_at
    FROM jsonb_to_recordset(t->'logs') AS c(entry integer, step_id text, attempt integer,
                                            level text, message text, fields jsonb,
                                            logged_at timestamptz);
    INSERT INTO tasks (id, tenant_id, run_id, step_id, attempt, available_at, priority,
                       correlation_id, trace_context, created_at, claims)
    SELECT c.id, v_tenant, v_run, c.step_id, c.attempt, coalesce(c.available_at, v_at),
           c.priority, c.correlation_id, c.trace_context, v_at, 0
    FROM jsonb_to_recordset(t->'tasks') AS c(id uuid, step_id text, attempt integer,
                                             available_at timestamptz, priority integer,
                                             correlation_id text, trace_context jsonb);
    PERFORM pg_notify('workflow_engine_events', '');
    IF jsonb_array_length(t->'tasks') > 0 THEN
        PERFORM pg_notify('workflow_engine_tasks', '');
    END IF;
    RETURN jsonb_build_object('status', 'ok', 'position', v_position);
END
$fn$
"""


def upgrade() -> None:
    op.add_column(
        "workflow_runs", sa.Column("version", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(
        """
        UPDATE workflow_runs SET version = coalesce((
            SELECT max(e.version) FROM events e
            WHERE e.tenant_id = workflow_runs.tenant_id
              AND e.aggregate_id = CAST(workflow_runs.id AS TEXT)
        ), 0)
        """
        if op.get_bind().dialect.name == "postgresql"
        else """
        UPDATE workflow_runs SET version = coalesce((
            SELECT max(e.version) FROM events e
            WHERE e.tenant_id = workflow_runs.tenant_id
              AND e.aggregate_id = lower(substr(workflow_runs.id, 1, 8) || '-'
                  || substr(workflow_runs.id, 9, 4) || '-' || substr(workflow_runs.id, 13, 4)
                  || '-' || substr(workflow_runs.id, 17, 4) || '-' || substr(workflow_runs.id, 21))
        ), 0)
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        for function in (TRANSITION, START):  # as written: no bind parameters in them
            op.get_bind().exec_driver_sql(function)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_run_transition(jsonb)")
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_start_run(jsonb)")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("version")
