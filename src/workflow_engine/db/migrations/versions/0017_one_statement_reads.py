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

FUNCTIONS = (JSON_TIME, JSON_MS, READ_RUN)
SIGNATURES = (
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
