"""`wait.event`: a step that waits, holding no worker, for an event a client appends.

    - id: reply
      uses: wait.event
      with:
        event: CustomerReplied              # the event type
        aggregate: "{{ input.ticket_id }}"  # the aggregate it is appended to
        timeout: 86400                      # optional, seconds from when the step starts waiting
        default: {text: null}               # optional: the output when the timeout passes

The step's output is the matched event's `data`. An event matches when it was appended
through `POST /events` to that aggregate with that type after the run was triggered, and no
other step of the run took it: an event that arrives before the step starts waiting is taken
at once, one that arrives during the wait wakes the step, and two steps of a run waiting for
the same kind of event take two events, in order. Without `default`, the timeout fails the step
with the class `timeout` (its retry policy may wait again).

Exactly once, across processes and restarts: the step's row in `event_waits` records the event
it took before its outcome is recorded, so whoever completes the step delivers that event and
no other. No wake-up is lost: a step arms its row and puts its task back in one transaction,
and an append wakes the armed rows of its aggregate and type in its own; on PostgreSQL both
take the same transaction-scoped advisory lock first, so one of them sees the other's commit
(SQLite runs one writer at a time).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import announce
from workflow_engine.db.tables import event_waits, events, tasks
from workflow_engine.db.upsert import upsert
from workflow_engine.engine import queue
from workflow_engine.events.system_types import SYSTEM_AGGREGATE_TYPES, SYSTEM_PREFIXES

WAIT_EVENT = "wait.event"
MAX_TIMEOUT = timedelta(days=366)
_EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,199}$")
_AGGREGATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
_FIELDS = frozenset({"event", "aggregate", "timeout", "default"})
# The first of the two keys of this module's advisory locks (the second hashes the wait's
# tenant, aggregate and type): two-key locks never collide with one-key ones.
_LOCK_CLASS = 0x57455701

ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "pattern": _EVENT_TYPE.pattern,
                  "description": "The event type to wait for."},
        "aggregate": {"type": "string", "pattern": _AGGREGATE_ID.pattern,
                      "description": "The aggregate id the event is appended to."},
        "timeout": {"type": "number", "exclusiveMinimum": 0,
                    "maximum": MAX_TIMEOUT.total_seconds(),
                    "description": "Seconds to wait, from when the step starts waiting."},
        "default": {"description": "The output when the timeout passes (else the step fails)."},
    },
    "required": ["event", "aggregate"],
    "additionalProperties": False,
}  # fmt: skip
DESCRIPTION = (
    "Waits durably, holding no worker, for an event of a type appended to an aggregate through "
    "POST /events; its output is the event's data."
)


class EventWaitError(ValueError):
    """The step's arguments do not say what to wait for."""


@dataclass(frozen=True)
class EventWait:
    event_type: str
    aggregate_id: str
    timeout: float | None = None
    default: Any = None
    has_default: bool = False

    def deadline(self, started: datetime) -> datetime | None:
        return None if self.timeout is None else started + timedelta(seconds=self.timeout)


def argument_problems(arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with a `wait.event`'s `with`, as far as it can be told before a run
    (values that are expressions are checked when the step runs)."""
    unknown = sorted(set(arguments) - _FIELDS)
    if unknown:
        return [f"{WAIT_EVENT} does not take {', '.join(map(repr, unknown))}"]
    missing = [name for name in ("event", "aggregate") if name not in arguments]
    if missing:
        return [f"{WAIT_EVENT} needs {' and '.join(f'`{name}`' for name in missing)}"]
    settled = {name: value for name, value in arguments.items()
               if not (isinstance(value, str) and "{{" in value)}  # fmt: skip
    problems = []
    for name, check in (
        ("event", _event_type),
        ("aggregate", _aggregate_id),
        ("timeout", timeout_seconds),
    ):
        if name in settled:
            try:
                check(settled[name])
            except EventWaitError as exc:
                problems.append(str(exc))
    return problems


def parse(arguments: Mapping[str, Any]) -> EventWait:
    """The wait a step's evaluated arguments describe."""
    problems = argument_problems(arguments)
    if problems:
        raise EventWaitError("; ".join(problems))
    return EventWait(
        event_type=_event_type(arguments["event"]),
        aggregate_id=_aggregate_id(arguments["aggregate"]),
        timeout=timeout_seconds(arguments.get("timeout")),
        default=arguments.get("default"),
        has_default="default" in arguments,
    )


def _event_type(value: Any) -> str:
    if not isinstance(value, str) or not _EVENT_TYPE.match(value):
        raise EventWaitError(f"`event` must be an event type like `CustomerReplied`: {value!r:.60}")
    return value


def _aggregate_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a numeric ticket id, as an expression renders it
    if not isinstance(value, str) or not _AGGREGATE_ID.match(value):
        raise EventWaitError(f"`aggregate` must be an aggregate id: {value!r:.60}")
    return value


def timeout_seconds(value: Any, error: type[ValueError] = EventWaitError) -> float | None:
    """A wait's `timeout` argument (None: none), or `error` saying what is wrong with it; the
    waits the engine carries out (`wait.event`, `approval`) share the rule."""
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT.total_seconds():
        raise error(
            f"`timeout` must be seconds, above 0 and at most {MAX_TIMEOUT.total_seconds():.0f}: "
            f"{value!r:.60}"
        )
    return float(value)


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Took:
    """The event the step took: its position in the log and its data (the step's output)."""

    position: int
    data: Any


ARMED = "armed"  # the step waits on; its task is back in the queue, due at its deadline
TIMED_OUT = "timed out"


async def check(
    conn: AsyncConnection, task: queue.Task, wait: EventWait, deadline: datetime | None
) -> Took | str:
    """For a waiting step whose task the caller holds: the event it takes (recorded as taken,
    so it is the one delivered whoever records the outcome), `TIMED_OUT` when `deadline`
    passed first, else `ARMED`: its row is armed and its task put back, due at `deadline`."""
    await _lock(conn, task.tenant_id, wait)
    key = {"run_id": task.run_id, "step_id": task.step_id}
    taken = (await conn.execute(_TAKEN, key)).scalar_one_or_none()
    if taken is None:
        found = (await conn.execute(_FIRST_UNTAKEN, _match(task, wait))).first()
        if found is not None:
            await conn.execute(_row(conn, task, wait, matched=found.position))
            return Took(found.position, found.data)
    else:
        found_data = {"tenant_id": task.tenant_id, "position": taken}
        data = (await conn.execute(_EVENT_DATA, found_data)).scalar_one()
        return Took(taken, data)
    moment = (await conn.execute(select(queue.now(conn)))).scalar_one()
    if deadline is not None and moment >= deadline:
        await conn.execute(delete(event_waits).where(*_this_step(task)))
        return TIMED_OUT
    await conn.execute(_row(conn, task, wait, matched=None))
    await queue.put_back(conn, task.id, task.lease_owner, deadline or queue.NEVER)
    return ARMED


async def wake(
    conn: AsyncConnection, tenant_id: uuid.UUID, aggregate_id: str, event_type: str
) -> None:
    """An event of `event_type` was appended to `aggregate_id` in this transaction: wake the
    steps waiting for one (their tasks are due now); each checks what it takes."""
    await _lock(conn, tenant_id, EventWait(event_type, aggregate_id))
    woken = (
        await conn.execute(
            _DISARM,
            {"tenant_id": tenant_id, "aggregate_id": aggregate_id, "event_type": event_type},
        )
    ).all()
    if not woken:
        return
    now = (await conn.execute(select(queue.now(conn)))).scalar_one()
    await conn.execute(
        _WAKE, [{"r": row.run_id, "s": row.step_id, "a": row.attempt, "now": now} for row in woken]
    )
    await announce(conn, queue.TASKS_READY, queue.NOTIFY_CHANNEL)


async def _lock(conn: AsyncConnection, tenant_id: uuid.UUID, wait: EventWait) -> None:
    if conn.dialect.name == "postgresql":
        key = f"{tenant_id}:{wait.aggregate_id}:{wait.event_type}"
        await conn.execute(_LOCK, {"key": key})


def _this_step(task: queue.Task) -> tuple[Any, ...]:
    return (event_waits.c.run_id == task.run_id, event_waits.c.step_id == task.step_id)


def _match(task: queue.Task, wait: EventWait) -> dict[str, Any]:
    return {"tenant_id": task.tenant_id, "run_id": task.run_id, "run": str(task.run_id),
            "aggregate_id": wait.aggregate_id, "event_type": wait.event_type}  # fmt: skip


def _row(conn: AsyncConnection, task: queue.Task, wait: EventWait, *, matched: int | None) -> Any:
    values = {"attempt": task.attempt, "aggregate_id": wait.aggregate_id,
              "event_type": wait.event_type, "matched_position": matched}  # fmt: skip
    return (
        upsert(conn, event_waits)
        .values(
            run_id=task.run_id,
            step_id=task.step_id,
            tenant_id=task.tenant_id,
            created_at=datetime.now(UTC),
            **values,
        )
        .on_conflict_do_update(
            index_elements=[event_waits.c.run_id, event_waits.c.step_id], set_=values
        )
    )


# Statements built once (building one costs more than its round trip).
_LOCK = select(func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(bindparam("key"))))
_TAKEN = select(event_waits.c.matched_position).where(
    event_waits.c.run_id == bindparam("run_id", type_=event_waits.c.run_id.type),
    event_waits.c.step_id == bindparam("step_id"),
)
_EVENT_DATA = select(events.c.data).where(
    events.c.tenant_id == bindparam("tenant_id", type_=events.c.tenant_id.type),
    events.c.position == bindparam("position"),
)
_TRIGGERED_AT = (
    select(events.c.position)
    .where(
        events.c.tenant_id == bindparam("tenant_id", type_=events.c.tenant_id.type),
        events.c.aggregate_id == bindparam("run"),
        events.c.version == 1,
    )
    .scalar_subquery()
)
_TAKEN_BY_RUN = select(event_waits.c.matched_position).where(
    event_waits.c.run_id == bindparam("run_id", type_=event_waits.c.run_id.type),
    event_waits.c.matched_position.is_not(None),
)
_FIRST_UNTAKEN = (
    select(events.c.position, events.c.data)
    .where(
        events.c.tenant_id == bindparam("tenant_id", type_=events.c.tenant_id.type),
        events.c.aggregate_id == bindparam("aggregate_id"),
        events.c.event_type == bindparam("event_type"),
        events.c.position > _TRIGGERED_AT,
        # The server's own aggregates (runs, users, ...) are not client events to wait for.
        events.c.aggregate_type.not_in(sorted(SYSTEM_AGGREGATE_TYPES)),
        not_(or_(*(events.c.aggregate_type.startswith(prefix) for prefix in SYSTEM_PREFIXES))),
        events.c.position.not_in(_TAKEN_BY_RUN),
    )
    .order_by(events.c.position)
    .limit(1)
)
_DISARM = (
    delete(event_waits)
    .where(
        event_waits.c.tenant_id == bindparam("tenant_id", type_=event_waits.c.tenant_id.type),
        event_waits.c.aggregate_id == bindparam("aggregate_id"),
        event_waits.c.event_type == bindparam("event_type"),
        event_waits.c.matched_position.is_(None),
    )
    .returning(event_waits.c.run_id, event_waits.c.step_id, event_waits.c.attempt)
)
_WAKE = (
    update(tasks)
    .where(
        and_(
            tasks.c.run_id == bindparam("r", type_=tasks.c.run_id.type),
            tasks.c.step_id == bindparam("s"),
            tasks.c.attempt == bindparam("a", type_=Integer()),
            tasks.c.lease_owner.is_(None),
        )
    )
    .values(available_at=bindparam("now", type_=tasks.c.available_at.type))
)
