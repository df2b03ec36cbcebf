"""On PostgreSQL, the API's hot reads as functions: each answers in one round trip, confined
to the tenant by row-level security, with its page rendered as JSON text.

`db/read_statements.py` calls them (and holds the same reads for SQLite). Each function takes
the tenant and `confine` (whether the caller runs tenant work as the policy-bound role, as
`Database.tenant_read` does). When set, the function takes that role and the tenant itself,
with the same two statements as `tenant_read`, so its query runs under the same policies as
a tenant transaction's; its queries filter by tenant too, as every tenant query does.
`SET app.tenant_id = ''` on each function confines the tenant setting to the call; the role
lasts until the transaction ends, which for these calls (each sent as a statement of its own,
outside any transaction) is the end of the call.

The JSON is what the API's response models render: keys in the models' order, times as
`2026-01-02T03:04:05.123456Z` (no fraction when it is zero), a step's `duration_ms` as the
float Python's `round(seconds * 1000, 3)` gives (`1500.0`, `12.345`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Kept in step with db/read_statements.py, which calls these, and with the API's models.

# Both are single expressions, so the planner inlines them into the queries below.
JSON_TIME = r"""
CREATE OR REPLACE FUNCTION workflow_engine_json_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT replace(to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   '.000000Z', 'Z')
$fn$
"""

JSON_MS = r"""
CREATE OR REPLACE FUNCTION workflow_engine_json_ms(started timestamptz, finished timestamptz)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT to_char(round((extract(epoch FROM finished - started) * 1000)::numeric, 3),
                   'FM999999999999990.099')::json
$fn$
"""

# What Database.tenant_read does (migration 0005): the role the policies bind, and the tenant
# they compare with. Written into each function rather than called: a nested PL/pgSQL call
# costs as much again.
_CONFINE = """
    IF p_confine THEN
        SET LOCAL ROLE workflow_engine_api;
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
    END IF;"""

# Objects are `row_to_json` of a row whose columns are the members, and arrays
# `array_to_json(array_agg(...))`: both print compact JSON, where `json_build_object` and
# `json_agg` put spaces (and line breaks) between members.
READ_RUN = rf"""
CREATE OR REPLACE FUNCTION workflow_engine_read_run(
    p_tenant uuid, p_confine boolean, p_run uuid, OUT document text, OUT llm_outputs text)
LANGUAGE plpgsql SET app.tenant_id = '' AS $fn$
BEGIN{_CONFINE}
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
    CROSS JOIN LATERAL (
        SELECT r.id AS workflow_id, r.workflow_name, r.workflow_version AS version, r.status,
               workflow_engine_json_time(r.created_at) AS created_at,
               workflow_engine_json_time(r.started_at) AS started_at,
               workflow_engine_json_time(r.finished_at) AS finished_at,
               (SELECT p FROM (SELECT r.steps_done AS completed, r.steps_total AS total) p)
                   AS progress,
               coalesce(s.steps, '[]'::json) AS steps,
               r.error
    ) doc
    WHERE r.id = p_run AND r.tenant_id = p_tenant;
END
$fn$
"""

READ_RUNS = rf"""
CREATE OR REPLACE FUNCTION workflow_engine_read_runs(
    p_tenant uuid, p_confine boolean, p_status text, p_workflow text, p_since timestamptz,
    p_until timestamptz, p_before_at timestamptz, p_before_id uuid, p_limit integer,
    OUT items text, OUT next_created_at timestamptz, OUT next_id uuid)
LANGUAGE plpgsql SET app.tenant_id = '' AS $fn$
BEGIN{_CONFINE}
    -- One row more than the page: whether it exists decides the next cursor.
    SELECT coalesce(array_to_json(array_agg(run ORDER BY page.n)
                                  FILTER (WHERE page.n <= p_limit)), '[]'::json)::text,
           CASE WHEN count(*) > p_limit
                THEN max(page.created_at) FILTER (WHERE page.n = p_limit) END,
           CASE WHEN count(*) > p_limit
                THEN (array_agg(page.id) FILTER (WHERE page.n = p_limit))[1] END
    INTO items, next_created_at, next_id
    FROM (
        SELECT id, workflow_name, workflow_version, status, created_at, finished_at,
               steps_done, steps_total,
               row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
        FROM workflow_runs
        WHERE tenant_id = p_tenant
          AND (p_status IS NULL OR status = p_status)
          AND (p_workflow IS NULL OR workflow_name = p_workflow)
          AND (p_since IS NULL OR created_at >= p_since)
          AND (p_until IS NULL OR created_at < p_until)
          AND (p_before_at IS NULL OR (created_at, id) < (p_before_at, p_before_id))
        ORDER BY created_at DESC, id DESC
        LIMIT p_limit + 1
    ) page
    CROSS JOIN LATERAL (
        SELECT page.id AS workflow_id, page.workflow_name, page.workflow_version AS version,
               page.status, workflow_engine_json_time(page.created_at) AS created_at,
               workflow_engine_json_time(page.finished_at) AS finished_at,
               (SELECT p FROM (SELECT page.steps_done AS completed,
                                      page.steps_total AS total) p) AS progress
    ) run;
END
$fn$
"""

READ_RUN_LOGS = rf"""
CREATE OR REPLACE FUNCTION workflow_engine_read_run_logs(
    p_tenant uuid, p_confine boolean, p_run uuid, p_after_position bigint,
    p_after_entry integer, p_limit integer,
    OUT known boolean, OUT items text, OUT last_id text)
LANGUAGE plpgsql SET app.tenant_id = '' AS $fn$
BEGIN{_CONFINE}
    SELECT EXISTS (SELECT 1 FROM workflow_runs WHERE id = p_run AND tenant_id = p_tenant),
           coalesce(array_to_json(array_agg(line ORDER BY page.n)), '[]'::json)::text,
           -- A full page names its last entry: the next page starts after it.
           CASE WHEN count(*) = p_limit
                THEN max(line.id) FILTER (WHERE page.n = p_limit) END
    INTO known, items, last_id
    FROM (
        SELECT position, entry, step_id, attempt, level, message, fields, logged_at,
               row_number() OVER (ORDER BY position, entry) AS n
        FROM run_logs
        WHERE run_id = p_run AND tenant_id = p_tenant
          AND (p_after_position IS NULL
               OR (position, entry) > (p_after_position, p_after_entry))
        ORDER BY position, entry
        LIMIT p_limit
    ) page
    CROSS JOIN LATERAL (
        SELECT page.position || '.' || page.entry AS id,
               workflow_engine_json_time(page.logged_at) AS time, page.level,
               page.step_id AS step, page.attempt, page.message, page.fields
    ) line;
END
$fn$
"""

READ_AGGREGATE = rf"""
CREATE OR REPLACE FUNCTION workflow_engine_read_aggregate(
    p_tenant uuid, p_confine boolean, p_aggregate text, p_from_version integer,
    p_limit integer, OUT known boolean, OUT items text, OUT next_version integer)
LANGUAGE plpgsql SET app.tenant_id = '' AS $fn$
BEGIN{_CONFINE}
    -- An empty page is a 404 only when the aggregate has no events at all.
    SELECT CASE WHEN count(*) > 0 THEN true
                ELSE EXISTS (SELECT 1 FROM events
                             WHERE tenant_id = p_tenant AND aggregate_id = p_aggregate) END,
           coalesce(array_to_json(array_agg(event ORDER BY page.version)
                                  FILTER (WHERE page.n <= p_limit)), '[]'::json)::text,
           CASE WHEN count(*) > p_limit
                THEN max(page.version) FILTER (WHERE page.n <= p_limit) END
    INTO known, items, next_version
    FROM (
        SELECT event_id, position, aggregate_type, aggregate_id, version, event_type,
               schema_version, data, metadata, recorded_at,
               row_number() OVER (ORDER BY version) AS n
        FROM events
        WHERE tenant_id = p_tenant AND aggregate_id = p_aggregate
          AND version >= p_from_version
        ORDER BY version
        LIMIT p_limit + 1
    ) page
    CROSS JOIN LATERAL (
        SELECT page.event_id, page.position, page.aggregate_type, page.aggregate_id,
               page.version, page.event_type, page.schema_version, page.data, page.metadata,
               workflow_engine_json_time(page.recorded_at) AS recorded_at
    ) event;
END
$fn$
"""

FUNCTIONS = (JSON_TIME, JSON_MS, READ_RUN, READ_RUNS, READ_RUN_LOGS, READ_AGGREGATE)
SIGNATURES = (
    "workflow_engine_read_aggregate(uuid, boolean, text, integer, integer)",
    "workflow_engine_read_run_logs(uuid, boolean, uuid, bigint, integer, integer)",
    "workflow_engine_read_runs(uuid, boolean, text, text, timestamptz, timestamptz, "
    "timestamptz, uuid, integer)",
    "workflow_engine_read_run(uuid, boolean, uuid)",
    "workflow_engine_json_ms(timestamptz, timestamptz)",
    "workflow_engine_json_time(timestamptz)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:  # as written: no bind parameters in them
            op.get_bind().exec_driver_sql(function)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for signature in SIGNATURES:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
