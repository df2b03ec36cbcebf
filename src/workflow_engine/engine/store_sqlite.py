"""The run store's statements on SQLite, written once and sent through the driver directly.

SQLite runs a statement of ours in microseconds; building and compiling one with SQLAlchemy
costs about 0.3 ms of Python, so a transition of nine statements spent nearly all its time
there. These are the same steps as the PostgreSQL functions of migration 0016, inside the
caller's write transaction (`BEGIN IMMEDIATE`, so nothing else writes meanwhile), with values
stored exactly as SQLAlchemy's column types store them: UUIDs as 32 hex digits, times as
naive UTC text, JSON as text (`None` as `null`, as SQLAlchemy's JSON type does). The
integration tests read every row back through SQLAlchemy on both databases.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from workflow_engine.engine import queue
from workflow_engine.engine.records import RunRecord, StepRecord
from workflow_engine.engine.run_events import RUN_AGGREGATE
from workflow_engine.events import chain
from workflow_engine.events.store import RecordedEvent

_VERSION = "SELECT version, status FROM workflow_runs WHERE id = ?"
_MOVED = (
    "SELECT 1 FROM events WHERE tenant_id = ? AND aggregate_id = ? AND version > ?"
    " AND event_type <> 'StepLogged' LIMIT 1"
)
_FINISH_TASK = "DELETE FROM tasks WHERE id = ? AND lease_owner = ?"
_RENEW_TASK = "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?"
_INSERT_EVENT = (
    "INSERT INTO events (event_id, tenant_id, aggregate_type, aggregate_id, version, event_type,"
    " schema_version, data, metadata, recorded_at, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) RETURNING position"
)
_HASH_OF = "SELECT hash FROM events WHERE tenant_id = ? AND aggregate_id = ? AND version = ?"
_UPSERT_AGGREGATE = (
    "INSERT INTO aggregates (tenant_id, aggregate_id, aggregate_type, version, last_event_type,"
    " last_position, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant_id, aggregate_id) DO UPDATE SET version = excluded.version,"
    " last_event_type = excluded.last_event_type, last_position = excluded.last_position,"
    " updated_at = excluded.updated_at WHERE aggregates.version < excluded.version"
)
_RUN_COLUMNS = (
    "id", "tenant_id", "workflow_name", "workflow_version", "status", "input", "output",
    "error", "definition", "steps_total", "steps_done", "correlation_id", "created_at",
    "started_at", "finished_at", "updated_at", "version", "parent_run_id", "parent_step_id",
    "gated", "replay_of_run_id", "replay_from_step",
)  # fmt: skip
_INSERT_RUN = (
    "INSERT INTO workflow_runs (id, tenant_id, workflow_name, workflow_version, status, input,"
    " output, error, definition, steps_total, steps_done, correlation_id, created_at,"
    " started_at, finished_at, updated_at, version, parent_run_id, parent_step_id, gated,"
    " replay_of_run_id, replay_from_step)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_RUN = (
    "UPDATE workflow_runs SET version = ?, status = ?, output = ?, error = ?, steps_done = ?,"
    " started_at = ?, finished_at = ?, updated_at = ? WHERE id = ?"
)
_UPDATE_RUN_VERSION = "UPDATE workflow_runs SET version = ? WHERE id = ?"
_INSERT_STEP = (
    "INSERT INTO step_runs (run_id, step_id, tenant_id, position, uses, status, attempts,"
    " output, error, next_attempt_at, started_at, finished_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_STEP = (
    "UPDATE step_runs SET status = ?, attempts = ?, output = ?, error = ?, next_attempt_at = ?,"
    " started_at = ?, finished_at = ? WHERE run_id = ? AND step_id = ?"
)
_INSERT_LOG = (
    "INSERT INTO run_logs (run_id, position, entry, tenant_id, step_id, attempt, level, message,"
    " fields, logged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DROP_WAITING = "DELETE FROM tasks WHERE run_id = ? AND step_id = ? AND lease_owner IS NULL"
_DROP_TASKS_OF = "DELETE FROM tasks WHERE run_id = ? AND step_id = ?"
_INSERT_TASK = (
    "INSERT INTO tasks (id, tenant_id, run_id, step_id, attempt, available_at, priority,"
    " correlation_id, trace_context, created_at, lease_owner, lease_expires_at, claims)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, step_id, attempt) DO NOTHING"
)
_CLAIM_KEY = (
    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, run_id, created_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, key) DO NOTHING"
)
_EARLIER = "SELECT run_id, request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?"


@dataclass
class Written:
    """What a transition wrote: `status` as in `store.Applied`, the run's version and status
    in the database, the events' positions, and the tasks leased to the caller."""

    status: str
    version: int = 0
    run_status: str | None = None
    positions: tuple[int, ...] = ()
    handed: tuple[queue.Task, ...] = ()


@dataclass
class Change:
    """A transition's writes, as `store` planned them."""

    run: RunRecord  # after the events (its version: as decided)
    expected_version: int | None
    run_changed: bool
    events: Sequence[RecordedEvent]
    steps: Sequence[StepRecord]
    logs: Sequence[dict[str, Any]]  # with "event": 1-based index into `events`
    finish: tuple[uuid.UUID, str] | None  # task id, owner
    renew: tuple[uuid.UUID, str] | None
    drop_steps: Sequence[str]
    drop_deadline: bool
    enqueue: Sequence[queue.NewTask]
    hand_to: Sequence[queue.NewTask]
    owner: str
    lease: timedelta


def record(db: sqlite3.Connection, change: Change) -> Written:
    """Carry out a transition in the caller's write transaction."""
    run = change.run
    found = db.execute(_VERSION, (run.id.hex,)).fetchone()
    if found is None:
        return Written("gone")
    version, status = found
    expected = change.expected_version
    if expected is not None and version != expected and _moved(db, change.run, expected):
        return Written("conflict", version, status)
    now = datetime.now(UTC)
    finish = change.finish
    if finish is not None and db.execute(_FINISH_TASK, (finish[0].hex, finish[1])).rowcount != 1:
        return Written("lost", version, status)
    if change.renew is not None:
        expiry = _time(now + change.lease)
        held = db.execute(_RENEW_TASK, (expiry, change.renew[0].hex, change.renew[1])).rowcount
        if held != 1:
            return Written("lost", version, status)
    positions = _insert_events(db, change.events, version)
    if change.events:
        last = change.events[-1]
        db.execute(_UPSERT_AGGREGATE, (
            run.tenant_id.hex, str(run.id), RUN_AGGREGATE, version + len(positions),
            last.event_type, positions[-1], _time(last.recorded_at), _time(last.recorded_at),
        ))  # fmt: skip
    new_version = version + len(positions)
    if change.run_changed:
        db.execute(_UPDATE_RUN, (
            new_version, run.status, _json(run.output), _json(run.error), run.steps_done,
            _time(run.started_at), _time(run.finished_at), _time(run.updated_at), run.id.hex,
        ))  # fmt: skip
        status = run.status
    else:
        db.execute(_UPDATE_RUN_VERSION, (new_version, run.id.hex))
    db.executemany(_UPDATE_STEP, [
        (step.status, step.attempts, _json(step.output), _json(step.error),
         _time(step.next_attempt_at), _time(step.started_at), _time(step.finished_at),
         run.id.hex, step.step_id)
        for step in change.steps
    ])  # fmt: skip
    _insert_logs(db, run, change.logs, positions)
    db.executemany(_DROP_WAITING, [(run.id.hex, step_id) for step_id in change.drop_steps])
    if change.drop_deadline:
        db.execute(_DROP_TASKS_OF, (run.id.hex, queue.DEADLINE))
    for task in change.enqueue:
        _insert_task(db, run, task, now, None, None)
    expiry_at = now + change.lease
    handed = tuple(
        handed
        for task in change.hand_to
        if (handed := _insert_task(db, run, task, now, change.owner, expiry_at)) is not None
    )
    return Written("ok", new_version, status, positions, handed)


def _moved(db: sqlite3.Connection, run: RunRecord, since: int) -> bool:
    """Whether the run changed since version `since`: an event other than log entries (which
    change no row a decision is made from) was appended after it."""
    found = db.execute(_MOVED, (run.tenant_id.hex, str(run.id), since)).fetchone()
    return found is not None


def start(
    db: sqlite3.Connection,
    run: RunRecord,
    event: RecordedEvent,
    logs: Sequence[dict[str, Any]],
    tasks: Sequence[queue.NewTask],
    idempotency: tuple[str, str] | None,
) -> tuple[uuid.UUID, str] | int:
    """Start a run in the caller's write transaction: its position, or the earlier run (and
    its request's hash) when the idempotency key was claimed before (nothing written)."""
    tenant = run.tenant_id.hex
    if idempotency is not None:
        key, request_hash = idempotency
        claimed = db.execute(_CLAIM_KEY, (tenant, key, request_hash, run.id.hex,
                                          _time(run.created_at))).rowcount  # fmt: skip
        if claimed != 1:
            run_id, earlier_hash = db.execute(_EARLIER, (tenant, key)).fetchone()
            return uuid.UUID(run_id), earlier_hash
    (position,) = _insert_events(db, (event,), 0)
    db.execute(_UPSERT_AGGREGATE, (
        tenant, str(run.id), RUN_AGGREGATE, 1, event.event_type, position,
        _time(event.recorded_at), _time(event.recorded_at),
    ))  # fmt: skip
    db.execute(_INSERT_RUN, tuple(_stored(name, getattr(run, name)) for name in _RUN_COLUMNS))
    db.executemany(_INSERT_STEP, [
        (run.id.hex, step.step_id, tenant, index, step.uses, step.status, step.attempts,
         _json(step.output), _json(step.error), _time(step.next_attempt_at),
         _time(step.started_at), _time(step.finished_at))
        for index, step in enumerate(run.steps)
    ])  # fmt: skip
    _insert_logs(db, run, logs, (position,))
    now = datetime.now(UTC)
    for task in tasks:
        _insert_task(db, run, task, now, None, None)
    return position


def _insert_events(
    db: sqlite3.Connection, events: Sequence[RecordedEvent], after_version: int
) -> tuple[int, ...]:
    """Append `events` to their (one) aggregate after `after_version`, chained (events/chain.py)."""
    if not events:
        return ()
    prev_hash = chain.GENESIS
    if after_version > 0:
        first = events[0]
        found = db.execute(_HASH_OF, (first.tenant_id.hex, first.aggregate_id, after_version))
        prev_hash = found.fetchone()[0] or chain.GENESIS
    positions = []
    for version, event in enumerate(events, start=after_version + 1):
        digest = chain.link(
            prev_hash,
            chain.content_digest(
                event_id=event.event_id,
                tenant_id=event.tenant_id,
                aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id,
                version=version,
                event_type=event.event_type,
                schema_version=1,
                data=event.data,
                metadata=event.metadata,
                recorded_at=event.recorded_at,
            ),
        )
        row = db.execute(
            _INSERT_EVENT,
            (
                event.event_id.hex,
                event.tenant_id.hex,
                event.aggregate_type,
                event.aggregate_id,
                version,
                event.event_type,
                _json(event.data),
                _json(event.metadata),
                _time(event.recorded_at),
                prev_hash,
                digest,
            ),
        ).fetchone()
        positions.append(int(row[0]))
        prev_hash = digest
    return tuple(positions)


def _insert_logs(
    db: sqlite3.Connection,
    run: RunRecord,
    logs: Sequence[dict[str, Any]],
    positions: Sequence[int],
) -> None:
    db.executemany(_INSERT_LOG, [
        (run.id.hex, positions[log.get("event", 1) - 1], log["entry"], run.tenant_id.hex,
         log["step_id"], log["attempt"], log["level"], log["message"], _json(log["fields"]),
         _time(log["logged_at"]))
        for log in logs
    ])  # fmt: skip


def _insert_task(
    db: sqlite3.Connection,
    run: RunRecord,
    task: queue.NewTask,
    now: datetime,
    owner: str | None,
    expiry: datetime | None,
) -> queue.Task | None:
    """Insert `task` (leased to `owner` when given); the task, or None when one for the same
    step and attempt was queued already."""
    task_id = uuid.uuid4()
    available = task.available_at or now
    claims = 1 if owner is not None else 0
    inserted = db.execute(_INSERT_TASK, (
        task_id.hex, run.tenant_id.hex, run.id.hex, task.step_id, task.attempt,
        _time(available), task.priority, task.correlation_id, _json(task.trace_context),
        _time(now), owner, _time(expiry), claims,
    )).rowcount  # fmt: skip
    if inserted != 1 or owner is None:
        return None
    return queue.Task(
        id=task_id, tenant_id=run.tenant_id, run_id=run.id, step_id=task.step_id,
        attempt=task.attempt, lease_owner=owner, correlation_id=task.correlation_id,
        claims=claims, available_at=available, trace_context=task.trace_context,
        priority=task.priority,
    )  # fmt: skip


_JSON_COLUMNS = frozenset({"input", "output", "error", "definition"})
_TIME_COLUMNS = frozenset({"created_at", "started_at", "finished_at", "updated_at"})


def _stored(name: str, value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if name in _JSON_COLUMNS:
        return _json(value)
    if name in _TIME_COLUMNS:
        return _time(value)
    return value


def _json(value: Any) -> str:
    return json.dumps(value)


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
