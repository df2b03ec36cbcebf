"""The API's hot reads, each one statement answering with its page as JSON text.

On PostgreSQL each is a call of a function of migration 0017 (the status read as migrations
0021 and 0028 rewrote it), which confines itself to the
tenant (see there); on SQLite the same query is written here, filtered by tenant like every
SQLite read (SQLite has no row-level security). Both render what the API's response models
render, with keys in the models' order: times as `2026-01-02T03:04:05.123456Z` (without the
fraction when it is zero), a duration in milliseconds as Python's float of
`round(seconds * 1000, 3)` (`1500.0`), UUIDs with hyphens, JSON columns as JSON.

SQLite stores values as SQLAlchemy's types do: UUIDs as 32 hex digits, times as
`YYYY-MM-DD HH:MM:SS.ffffff` in UTC, JSON as text (hence `json(...)`, which also tells
`json_object` it is JSON, not a string). A subquery's value loses that mark, so a JSON
subquery is wrapped in `json(...)` too. `json_group_array` collects rows in the order of its
subquery: SQLite never flattens an ordered subquery into an aggregate.

A run's steps are found by the run's key. Without statistics SQLite's planner prefers the
one-column index on `tenant_id` to the primary key `(run_id, step_id)` and would scan every
step of the tenant; a unary `+` on the tenant's column keeps it a filter, never an index.
"""

from __future__ import annotations

from workflow_engine.db.single_statement import ReadStatement


def _time(column: str) -> str:
    iso = f"substr({column}, 1, 10) || 'T' || substr({column}, 12) || 'Z'"
    return f"replace({iso}, '.000000Z', 'Z')"


def _uuid(column: str) -> str:
    return (
        f"(substr({column}, 1, 8) || '-' || substr({column}, 9, 4) || '-' || "
        f"substr({column}, 13, 4) || '-' || substr({column}, 17, 4) || '-' || "
        f"substr({column}, 21))"
    )


def _micros(started: str, finished: str) -> str:
    """Microseconds between two times (null if either is): SQLite's own time arithmetic
    (`julianday`) keeps milliseconds only."""
    return (
        f"((strftime('%s', {finished}) - strftime('%s', {started})) * 1000000"
        f" + CAST(substr({finished}, 21) AS INTEGER) - CAST(substr({started}, 21) AS INTEGER))"
    )


def _milliseconds(micros: str) -> str:
    """As JSON, Python's float of `micros / 1000`: `1500.0`, `12.345`, `-0.5`."""
    return (
        f"CASE WHEN {micros} IS NULL THEN NULL"
        f" WHEN {micros} % 1000 = 0 THEN json(({micros} / 1000) || '.0')"
        f" ELSE json(rtrim(printf('%.3f', {micros} / 1000.0), '0')) END"
    )


RUN_STATUS = ReadStatement(
    params=("tenant", "confine", "run"),
    postgresql="SELECT document, llm_outputs FROM workflow_engine_read_run($1, $2, $3)",
    sqlite=f"""
SELECT (
    SELECT json_object(
        'workflow_id', {_uuid("r.id")}, 'workflow_name', r.workflow_name,
        'version', r.workflow_version, 'status', r.status,
        'created_at', {_time("r.created_at")}, 'started_at', {_time("r.started_at")},
        'finished_at', {_time("r.finished_at")},
        'progress', json_object('completed', r.steps_done, 'total', r.steps_total),
        'steps', json((
            SELECT json_group_array(json_object(
                'id', s.step_id, 'uses', s.uses, 'status', s.status, 'attempts', s.attempts,
                'started_at', {_time("s.started_at")}, 'finished_at', {_time("s.finished_at")},
                'duration_ms', {_milliseconds("s.micros")},
                'next_attempt_at', {_time("s.next_attempt_at")}, 'error', json(s.error)))
            FROM (SELECT *, {_micros("started_at", "finished_at")} AS micros
                  FROM step_runs WHERE run_id = r.id AND +tenant_id = r.tenant_id
                  ORDER BY position) s)),
        'error', json(r.error),
        'parent', CASE WHEN r.parent_run_id IS NOT NULL THEN json_object(
            'workflow_id', {_uuid("r.parent_run_id")}, 'step', r.parent_step_id) END,
        'children', json((
            SELECT json_group_array(json_object(
                'workflow_id', {_uuid("c.id")}, 'workflow_name', c.workflow_name,
                'step', c.parent_step_id, 'status', c.status))
            FROM (SELECT * FROM workflow_runs WHERE parent_run_id = r.id
                  AND +tenant_id = r.tenant_id ORDER BY created_at, id) c)),
        'replay_of', CASE WHEN r.replay_of_run_id IS NOT NULL THEN json_object(
            'workflow_id', {_uuid("r.replay_of_run_id")}, 'from_step', r.replay_from_step) END,
        'replays', json((
            SELECT json_group_array(json_object(
                'workflow_id', {_uuid("y.id")}, 'from_step', y.replay_from_step,
                'status', y.status, 'created_at', {_time("y.created_at")}))
            FROM (SELECT * FROM workflow_runs WHERE replay_of_run_id = r.id
                  AND +tenant_id = r.tenant_id ORDER BY created_at, id) y)))
    FROM workflow_runs r
    WHERE r.id = :run AND r.tenant_id = :tenant
), (
    SELECT CASE WHEN count(*) > 0 THEN json_group_array(json(output)) END
    FROM (SELECT output FROM step_runs
          WHERE run_id = :run AND +tenant_id = :tenant
            AND substr(uses, 1, 4) = 'llm.' AND status = 'completed' AND attempts > 0
          ORDER BY position)
)
""",
)
"""The run's status without `llm_usage` and `links` (null when the run is unknown here), and
the outputs of the LLM steps it ran and completed (a JSON array, null when there are none):
not those a replay reused (attempt 0), whose calls the original made."""

RUN_PAGE = ReadStatement(
    params=("tenant", "confine", "status", "workflow_name", "since", "until", "before_at",
            "before_id", "limit"),
    postgresql="SELECT items, next_created_at, next_id"
               " FROM workflow_engine_read_runs($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    sqlite=f"""
SELECT json_group_array(json_object(
           'workflow_id', {_uuid("id")}, 'workflow_name', workflow_name,
           'version', workflow_version, 'status', status,
           'created_at', {_time("created_at")}, 'finished_at', {_time("finished_at")},
           'progress', json_object('completed', steps_done, 'total', steps_total)))
           FILTER (WHERE n <= :limit),
       CASE WHEN count(*) > :limit THEN max(created_at) FILTER (WHERE n = :limit) END,
       CASE WHEN count(*) > :limit THEN max(id) FILTER (WHERE n = :limit) END
FROM (
    SELECT id, workflow_name, workflow_version, status, created_at, finished_at, steps_done,
           steps_total, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
    FROM workflow_runs
    WHERE tenant_id = :tenant
      AND (:status IS NULL OR status = :status)
      AND (:workflow_name IS NULL OR workflow_name = :workflow_name)
      AND (:since IS NULL OR created_at >= :since)
      AND (:until IS NULL OR created_at < :until)
      AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
    ORDER BY created_at DESC, id DESC
    LIMIT :limit + 1
)
""",
)  # fmt: skip
"""Newest first: the page's items, and the created_at and id of its last run when another
page follows."""

RUN_LOG_PAGE = ReadStatement(
    params=("tenant", "confine", "run", "after_position", "after_entry", "limit"),
    postgresql="SELECT known, items, last_id"
               " FROM workflow_engine_read_run_logs($1, $2, $3, $4, $5, $6)",
    sqlite=f"""
SELECT EXISTS (SELECT 1 FROM workflow_runs WHERE id = :run AND tenant_id = :tenant),
       json_group_array(json_object(
           'id', position || '.' || entry, 'time', {_time("logged_at")}, 'level', level,
           'step', step_id, 'attempt', attempt, 'message', message, 'fields', json(fields))),
       CASE WHEN count(*) = :limit
            THEN max(position || '.' || entry) FILTER (WHERE n = :limit) END
FROM (
    SELECT position, entry, step_id, attempt, level, message, fields, logged_at,
           row_number() OVER (ORDER BY position, entry) AS n
    FROM run_logs
    WHERE run_id = :run AND tenant_id = :tenant
      AND (:after_position IS NULL OR (position, entry) > (:after_position, :after_entry))
    ORDER BY position, entry
    LIMIT :limit
)
""",
)  # fmt: skip
"""Whether the run is known here, its entries after (position, entry) in order, and the
id of the last one when the page is full."""

AGGREGATE_PAGE = ReadStatement(
    params=("tenant", "confine", "aggregate_id", "from_version", "limit"),
    postgresql="SELECT known, items, next_version"
               " FROM workflow_engine_read_aggregate($1, $2, $3, $4, $5)",
    sqlite=f"""
SELECT CASE WHEN count(*) > 0 THEN 1
            ELSE EXISTS (SELECT 1 FROM events
                         WHERE tenant_id = :tenant AND aggregate_id = :aggregate_id) END,
       json_group_array(json_object(
           'event_id', {_uuid("event_id")}, 'position', position,
           'aggregate_type', aggregate_type, 'aggregate_id', aggregate_id,
           'version', version, 'event_type', event_type, 'schema_version', schema_version,
           'data', json(data), 'metadata', json(metadata),
           'recorded_at', {_time("recorded_at")})) FILTER (WHERE n <= :limit),
       CASE WHEN count(*) > :limit THEN max(version) FILTER (WHERE n <= :limit) END
FROM (
    SELECT event_id, position, aggregate_type, aggregate_id, version, event_type,
           schema_version, data, metadata, recorded_at,
           row_number() OVER (ORDER BY version) AS n
    FROM events
    WHERE tenant_id = :tenant AND aggregate_id = :aggregate_id AND version >= :from_version
    ORDER BY version
    LIMIT :limit + 1
)
""",
)  # fmt: skip
"""Whether the aggregate has events (asked only when the page is empty), the page's events
in version order, and the version of its last event when another page follows."""
