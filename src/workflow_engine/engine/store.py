"""The run store: reading a run for the engine, and recording a run transition.

A *transition* is everything one decision changes, recorded atomically: the run's new events,
the `workflow_runs`/`step_runs` rows they fold into (folded here, in memory, by `run_fold`),
their log entries, the aggregate catalogue's row, the task the worker finished (or whose
lease it renews) and the tasks the decision drops and enqueues, and the notifications.

Guarantees:

- **Optimistic concurrency.** A transition carries the run's version its decision was made
  from. If another transition got there first, nothing is written and the answer is
  `conflict`: the caller reads the run again and decides again. A transition that finishes or
  renews a task whose lease was lost writes nothing either (`lost`): whoever holds the task
  now records its outcome, so each attempt's outcome is recorded once.
- **One round trip on PostgreSQL.** The whole transition is one call of the SQL function
  `workflow_engine_run_transition` (migration 0016), sent outside an explicit transaction so
  that the call is its own transaction: no BEGIN or COMMIT round trips. The function locks the
  run's row, so transitions of one run are serialised by the database. Transitions share one
  connection per store while its user is busy (`idle()` gives it back), so neither a checkout
  nor the pool's liveness check is paid per transition.
- **SQLite** runs the same steps as statements in one write transaction (writers are
  serialised there anyway).
- **Other read models.** A projection the application registered that wants a run's events
  is folded in the same transaction as the transition (on PostgreSQL this takes the
  function call inside an explicit transaction, and so more round trips).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db import Database
from workflow_engine.db.database import after_commit, mark_commit
from workflow_engine.db.sqlite_inline import InlineConnection
from workflow_engine.engine import child_runs, queue, store_sqlite
from workflow_engine.engine.records import RunRecord, StepRecord
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.engine.run_fold import FoldedEvent, fold
from workflow_engine.engine.run_logs import entries_of
from workflow_engine.engine.run_metrics import count_run_finished
from workflow_engine.engine.run_projection import load_run
from workflow_engine.engine.states import RUN_FINISHED
from workflow_engine.events.projections import Projections, registry
from workflow_engine.events.store import APPENDED, RecordedEvent
from workflow_engine.observability import metrics

T = TypeVar("T")

# The read models a transition writes itself; any other projection is folded after it.
_WRITTEN_HERE = frozenset({"aggregates", "workflow_runs", "run_logs"})


@dataclass(frozen=True)
class TaskLease:
    id: uuid.UUID
    owner: str


@dataclass
class Transition:
    """What one decision changes. `run` is the run the decision was made from."""

    run: RunRecord
    events: list[tuple[RunEvent, dict[str, Any]]]
    metadata: dict[str, Any]
    finish_task: TaskLease | None = None  # delete it, if its lease is still held
    renew_task: TaskLease | None = None  # renew its lease, if still held
    enqueue: Sequence[queue.NewTask] = ()
    hand_to: Sequence[queue.NewTask] = ()  # enqueued already leased to `owner`
    owner: str = ""
    lease: timedelta = timedelta(seconds=30)
    drop_steps: Sequence[str] = ()  # delete these steps' tasks no worker holds
    drop_deadline: bool = False  # delete the run's `:deadline` task
    expect_version: bool = True  # False: append whatever the run's version is now


@dataclass
class Applied:
    status: Literal["ok", "conflict", "lost", "gone"]
    run_status: str | None = None  # the run's status in the database (after, when ok)
    run: RunRecord | None = None  # after the transition (ok)
    events: list[RecordedEvent] = field(default_factory=list)
    handed: list[queue.Task] = field(default_factory=list)


@dataclass
class NewRun:
    """A run to start: its rows as `WorkflowTriggered` folds them, the event's payload and
    metadata, its first tasks, and the idempotency key it claims (with the request's hash)."""

    run: RunRecord
    data: dict[str, Any]
    metadata: dict[str, Any]
    tasks: Sequence[queue.NewTask]
    idempotency_key: str | None = None
    request_hash: str = ""


@dataclass(frozen=True)
class Earlier:
    """The run an earlier request with the same idempotency key started, and its hash."""

    run_id: uuid.UUID
    request_hash: str


class RunStore:
    def __init__(
        self, db: Database, projections: Projections = registry, *, keep_connection: bool = False
    ) -> None:
        """`keep_connection`: transitions share one connection until `idle()` (a worker, whose
        transitions come one after another while it is busy); else each takes one from the
        pool and gives it back."""
        self.db = db
        self.projections = projections
        self._lane = _Lane(db, keep_connection) if not db.is_sqlite else None

    async def read(self, run_id: uuid.UUID) -> tuple[RunRecord, frozenset[str]] | None:
        """The run with its steps, and the steps a worker holds (their task is leased)."""
        async with self.db.read() as conn:
            run = await load_run(conn, run_id)
            if run is None:
                return None
            return run, await queue.held_steps(conn, run_id)

    async def start(self, conn: AsyncConnection, new: NewRun) -> Earlier | None:
        """Start `new` in the caller's (tenant) transaction: claim its idempotency key, append
        `WorkflowTriggered`, write the run's rows, its log entry, its catalogue row and its
        first tasks. Returns the earlier run when the key was claimed before (nothing written).
        One statement on PostgreSQL; other projections that want the event fold it too."""
        event = RecordedEvent(
            position=0, event_id=uuid.uuid4(), tenant_id=new.run.tenant_id,
            aggregate_type=RUN_AGGREGATE, aggregate_id=str(new.run.id), version=1,
            event_type=RunEvent.triggered, schema_version=1, data=new.data,
            metadata=new.metadata, recorded_at=new.run.created_at,
        )  # fmt: skip
        if self.db.is_sqlite:
            earlier, position = await _start_sqlite(conn, new, event)
        else:
            answer = (
                await conn.exec_driver_sql(_START, (_start_document(new, event),))
            ).scalar_one()
            result = json.loads(answer) if isinstance(answer, str) else answer
            if result["status"] == "exists":
                earlier = Earlier(uuid.UUID(result["run_id"]), result["request_hash"])
            else:
                earlier, position = None, int(result["position"])
        if earlier is not None:
            return earlier
        recorded = dataclasses.replace(event, position=position)
        for projection in self.projections:
            if projection.name not in _WRITTEN_HERE and projection.wants(recorded):
                await projection.apply(conn, recorded)
        mark_commit(conn, APPENDED)
        if new.tasks:
            mark_commit(conn, queue.TASKS_READY)
        name = new.run.workflow_name

        def count() -> None:
            metrics.runs_started.labels(name).inc()
            metrics.events_appended.labels(RUN_AGGREGATE).inc()

        after_commit(conn, count)
        return None

    async def record(self, transition: Transition) -> Applied:
        """Record `transition` atomically (see the module doc)."""
        at = datetime.now(UTC)
        plan = _plan(transition, at)
        others = [p for p in self.projections if p.name not in _WRITTEN_HERE
                  and any(p.wants(e) for e in plan.recorded)]  # fmt: skip
        if self._lane is not None and not others:
            answer = await self._lane.call(_document(transition, plan, at))
            applied = _applied(transition, plan, answer)
            if applied.status == "ok":
                self._committed_here(applied, plan)
            return applied
        async with self.db.transaction() as conn:
            if self.db.is_sqlite:
                applied = await _record_sqlite(conn, transition, plan, at)
            else:
                answer = (
                    await conn.exec_driver_sql(_CALL, (_document(transition, plan, at),))
                ).scalar_one()
                applied = _applied(transition, plan, answer)
            if applied.status == "ok":
                for projection in others:
                    for event in applied.events:
                        if projection.wants(event):
                            await projection.apply(conn, event)
                mark_commit(conn, APPENDED)
                if plan.enqueues:
                    mark_commit(conn, queue.TASKS_READY)
                after_commit(conn, lambda: _count(transition.run, applied))
        return applied

    async def idle(self) -> None:
        """Its user has nothing in flight: give back the connection transitions share."""
        if self._lane is not None:
            await self._lane.idle()

    def _committed_here(self, applied: Applied, plan: _Plan) -> None:
        """What a committed transaction's listeners hear (`Database.on_commit`)."""
        self.db.committed({APPENDED, queue.TASKS_READY} if plan.enqueues else {APPENDED})
        _count(plan.before, applied)


@dataclass
class _Plan:
    before: RunRecord
    after: RunRecord
    recorded: list[RecordedEvent]  # positions 0 until the database assigns them
    steps: list[StepRecord]  # rows that changed
    logs: list[dict[str, Any]]
    enqueues: bool  # tasks are ready after it: enqueued, or a parent step woken
    run_changed: bool  # its row, not counting the version


def _plan(t: Transition, at: datetime) -> _Plan:
    run = t.run
    recorded = []
    after = run
    for offset, (kind, data) in enumerate(t.events, start=1):
        event = RecordedEvent(
            position=0, event_id=uuid.uuid4(), tenant_id=run.tenant_id,
            aggregate_type=RUN_AGGREGATE, aggregate_id=str(run.id),
            version=run.version + offset, event_type=kind, schema_version=1, data=data,
            metadata=t.metadata, recorded_at=at,
        )  # fmt: skip
        recorded.append(event)
        after = fold(after, FoldedEvent(kind, data, t.metadata, event.version, at))
    steps = [new for new, old in zip(after.steps, run.steps, strict=True) if new != old]
    logs = [
        {"event": index, "entry": e.entry, "step_id": e.step_id, "attempt": e.attempt,
         "level": e.level, "message": e.message, "fields": e.fields, "logged_at": e.logged_at}
        for index, event in enumerate(recorded, start=1)
        for e in entries_of(event)
    ]  # fmt: skip
    run_changed = dataclasses.replace(after, version=run.version, steps=run.steps) != run
    if not t.expect_version and (run_changed or steps):
        # Appending at whatever version the run has reached is only sound for events that
        # change no row (log entries): rows folded from a stale snapshot would undo others'.
        raise ValueError("a transition that changes the run must expect its version")
    # A child run's end makes its parent step's task due, a parent's failure or cancel queues
    # its children's cancels (triggers, migration 0021), a gated run's end wakes an admission
    # (0023): this process's workers hear of it as of any task made ready.
    ended = after.status in RUN_FINISHED and run.status not in RUN_FINISHED
    links = ended and (after.gated or child_runs.related(after))
    return _Plan(run, after, recorded, steps, logs, bool(t.enqueue) or links, run_changed)


def _document(t: Transition, plan: _Plan, at: datetime) -> str:
    run = plan.after
    document = {
        "run_id": run.id, "tenant_id": run.tenant_id, "recorded_at": at,
        "expected_version": t.run.version if t.expect_version else None,
        "finish_task": _lease(t.finish_task), "renew_task": _lease(t.renew_task),
        "owner": t.owner, "lease_seconds": t.lease.total_seconds(),
        "events": [{"event_id": e.event_id, "type": e.event_type, "data": e.data,
                    "metadata": e.metadata} for e in plan.recorded],
        "run": None if not plan.run_changed else {
            "status": run.status, "output": run.output, "error": run.error,
            "steps_done": run.steps_done, "started_at": run.started_at,
            "finished_at": run.finished_at, "updated_at": run.updated_at,
        },
        "steps": [dataclasses.asdict(step) for step in plan.steps],
        "logs": plan.logs,
        "drop_steps": list(t.drop_steps), "drop_deadline": t.drop_deadline,
        "tasks": [_task(task, leased=False) for task in t.enqueue]
                 + [_task(task, leased=True) for task in t.hand_to],
    }  # fmt: skip
    return json.dumps(document, default=_encode, separators=(",", ":"))


def _start_document(new: NewRun, event: RecordedEvent) -> str:
    run = new.run
    columns = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name != "steps"}
    document = {
        "run_id": run.id, "tenant_id": run.tenant_id, "recorded_at": run.created_at,
        "event_id": event.event_id, "data": new.data, "metadata": new.metadata,
        "idempotency_key": new.idempotency_key, "request_hash": new.request_hash,
        "run": columns,
        "steps": [
            {**dataclasses.asdict(step), "run_id": run.id, "tenant_id": run.tenant_id,
             "position": index}
            for index, step in enumerate(run.steps)
        ],
        "logs": [
            {"entry": e.entry, "step_id": e.step_id, "attempt": e.attempt, "level": e.level,
             "message": e.message, "fields": e.fields, "logged_at": e.logged_at}
            for e in entries_of(event)
        ],
        "tasks": [_task(task, leased=False) for task in new.tasks],
    }  # fmt: skip
    return json.dumps(document, default=_encode, separators=(",", ":"))


def _lease(lease: TaskLease | None) -> dict[str, str] | None:
    return None if lease is None else {"id": str(lease.id), "owner": lease.owner}


def _task(task: queue.NewTask, *, leased: bool) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "step_id": task.step_id, "attempt": task.attempt,
            "available_at": task.available_at, "priority": task.priority,
            "correlation_id": task.correlation_id, "trace_context": task.trace_context,
            "leased": leased}  # fmt: skip


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _applied(t: Transition, plan: _Plan, answer: str | dict[str, Any]) -> Applied:
    result = json.loads(answer) if isinstance(answer, str) else answer
    status = result["status"]
    if status != "ok":
        return Applied(status, result.get("run_status"))
    first = result["version"] - len(plan.recorded)  # log entries may have come in between
    recorded = [
        dataclasses.replace(event, position=position, version=first + n)
        for n, (event, position) in enumerate(
            zip(plan.recorded, result["positions"], strict=True), 1
        )
    ]
    handed = [
        queue.Task(
            id=uuid.UUID(row["id"]),
            tenant_id=t.run.tenant_id,
            run_id=t.run.id,
            step_id=row["step_id"],
            attempt=row["attempt"],
            lease_owner=t.owner,
            correlation_id=_carried(t, row["step_id"]).correlation_id,
            claims=row["claims"],
            available_at=datetime.fromisoformat(row["available_at"]),
            trace_context=_carried(t, row["step_id"]).trace_context,
            priority=_carried(t, row["step_id"]).priority,
        )
        for row in result["leased"]
    ]
    after = dataclasses.replace(plan.after, version=result["version"])
    return Applied("ok", result["run_status"], after, recorded, handed)


def _carried(t: Transition, step_id: str) -> queue.NewTask:
    return next(task for task in t.hand_to if task.step_id == step_id)


def _count(before: RunRecord, applied: Applied) -> None:
    """Events appended and runs finished, for `/metrics` (runs started are counted by the
    trigger)."""
    if applied.events:
        metrics.events_appended.labels(RUN_AGGREGATE).inc(len(applied.events))
    after = applied.run
    if after is None or before.status in RUN_FINISHED or after.status not in RUN_FINISHED:
        return
    ended = after.finished_at or after.updated_at
    count_run_finished(after.workflow_name, after.status, after.created_at, ended)


# --- SQLite: the same steps as statements in one write transaction -------------------------


async def _record_sqlite(
    conn: AsyncConnection, t: Transition, plan: _Plan, at: datetime
) -> Applied:
    change = store_sqlite.Change(
        run=plan.after, expected_version=t.run.version if t.expect_version else None,
        run_changed=plan.run_changed, events=plan.recorded, steps=plan.steps, logs=plan.logs,
        finish=(t.finish_task.id, t.finish_task.owner) if t.finish_task else None,
        renew=(t.renew_task.id, t.renew_task.owner) if t.renew_task else None,
        drop_steps=t.drop_steps, drop_deadline=t.drop_deadline, enqueue=t.enqueue,
        hand_to=t.hand_to, owner=t.owner, lease=t.lease,
    )  # fmt: skip
    written = await _in_sqlite(conn, lambda db: store_sqlite.record(db, change))
    if written.status != "ok":
        return Applied(written.status, written.run_status)  # type: ignore[arg-type]
    if plan.enqueues:
        mark_commit(conn, queue.TASKS_READY)
    first = written.version - len(plan.recorded)  # the version the events were appended after
    recorded = [
        dataclasses.replace(event, position=position, version=first + n)
        for n, (event, position) in enumerate(zip(plan.recorded, written.positions, strict=True), 1)
    ]
    status = written.run_status or plan.after.status
    after = dataclasses.replace(plan.after, version=written.version, status=status)
    return Applied("ok", status, after, recorded, list(written.handed))


async def _in_sqlite(conn: AsyncConnection, work: Callable[[sqlite3.Connection], T]) -> T:
    raw = await conn.get_raw_connection()
    inline: InlineConnection = raw.driver_connection  # type: ignore[assignment]
    return inline.in_write_transaction(work)


async def _start_sqlite(
    conn: AsyncConnection, new: NewRun, event: RecordedEvent
) -> tuple[Earlier | None, int]:
    key = (new.idempotency_key, new.request_hash) if new.idempotency_key is not None else None
    logs = [
        {"entry": e.entry, "step_id": e.step_id, "attempt": e.attempt, "level": e.level,
         "message": e.message, "fields": e.fields, "logged_at": e.logged_at}
        for e in entries_of(event)
    ]  # fmt: skip
    started = await _in_sqlite(
        conn, lambda db: store_sqlite.start(db, new.run, event, logs, new.tasks, key)
    )
    if isinstance(started, tuple):
        return Earlier(*started), 0
    if new.tasks:
        mark_commit(conn, queue.TASKS_READY)
    return None, started


# --- PostgreSQL: one function call on a connection kept while transitions keep coming -------

_CALL = "SELECT workflow_engine_run_transition($1::jsonb)"
_START = "SELECT workflow_engine_start_run($1::jsonb)"


class _Lane:
    """One pooled connection that transitions take turns on, kept while its user is busy (so
    neither a checkout nor the pool's liveness check is paid per transition) and given back
    when it goes idle, so an idle worker holds none."""

    def __init__(self, db: Database, keep: bool) -> None:
        self.db = db
        self._keep = keep
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._conn: AsyncConnection | None = None
        self._driver: Any = None

    async def call(self, document: str) -> str:
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            if self._driver is None:
                self._conn = await self.db.engine.connect()
                raw = await self._conn.get_raw_connection()
                self._driver = raw.driver_connection
            answer: str = await self._driver.fetchval(_CALL, document)
            if not self._keep:
                await self._give_back()
            return answer
        except BaseException:
            await self._give_back(invalidate=True)
            raise
        finally:
            self._turn.release()

    async def idle(self) -> None:
        """Give the connection back to the pool, unless a transition is waiting for it."""
        if self._waiting == 0 and not self._turn.locked():
            await self._give_back()

    async def _give_back(self, *, invalidate: bool = False) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is None:
            return
        if invalidate:
            await conn.invalidate()
        await conn.close()
