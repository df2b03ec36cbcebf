"""Runs as the API sees them: trigger, read, list, cancel. The worker does the rest.

A trigger is one transaction: the idempotency key (when given), `WorkflowTriggered` on the
new run's aggregate (folded into `workflow_runs`/`step_runs`), and the tasks of the steps that
need nothing. The run carries the whole definition it started with, so changing or removing a
definition later never affects it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db import Database
from workflow_engine.db.database import mark_commit
from workflow_engine.db.single_statement import JsonPage
from workflow_engine.db.tables import workflow_runs
from workflow_engine.engine import admission, child_runs, queue, replays, run_reads, scheduler
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.engine.run_fold import FoldedEvent, new_run
from workflow_engine.engine.run_logs import LogEntry, read_entries
from workflow_engine.engine.run_metrics import count_run_events
from workflow_engine.engine.run_projection import load_run
from workflow_engine.engine.states import RUN_FINISHED, RunStatus, StepStatus
from workflow_engine.engine.store import NewRun, RunStore
from workflow_engine.errors import Conflict, InvalidInput, NotFound
from workflow_engine.events.append import append_events
from workflow_engine.events.storable import check_document
from workflow_engine.events.store import NewEvent, read_aggregate
from workflow_engine.observability import tracing

# What a transaction that asked for a cancel marks itself with: in-process workers re-check
# their running steps at once instead of at their next heartbeat.
RUN_CANCELLED = "runs.cancelled"
MAX_ERRORS = 20


@dataclass(frozen=True)
class Origin:
    actor: str
    correlation_id: str | None
    source: str = "api"

    def metadata(self) -> dict[str, Any]:
        return {"actor": self.actor, "correlation_id": self.correlation_id, "source": self.source}


class RunService:
    def __init__(self, db: Database, catalog: DefinitionCatalog, *, capped: bool = False) -> None:
        """`capped`: `MAX_RUNNING_PER_TENANT` is set (runs start through admission)."""
        self.db = db
        self.catalog = catalog
        self.capped = capped
        self.store = RunStore(db)

    async def trigger(
        self,
        tenant_id: uuid.UUID,
        workflow_name: str,
        data: Any,
        *,
        version: int | None,
        idempotency_key: str | None,
        origin: Origin,
        priority: int = 0,
    ) -> tuple[RunRecord, bool]:
        """Start a run; returns it and whether it is new (False: the key's earlier run).
        `priority`: its steps are claimed before those of runs with a lower one."""
        definition = self.catalog.get(workflow_name, version)
        check_document("data", data)  # before hashing: NaN or a lone surrogate cannot be hashed
        check_input(definition, data)
        gated = admission.gated(definition, capped=self.capped, child=False)
        new = starting_run(tenant_id, definition, data, origin, priority, gated=gated)
        new.idempotency_key = idempotency_key
        new.request_hash = _request_hash(workflow_name, version, data, priority)
        async with self.db.tenant_transaction(tenant_id) as conn:
            return await self._start(conn, tenant_id, new)

    async def replay(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        from_step: str,
        overrides: replays.Overrides,
        *,
        idempotency_key: str | None,
        origin: Origin,
    ) -> tuple[RunRecord, bool]:
        """Start a new run that reuses the original's outputs before `from_step` and executes
        from there (`engine/replays.py`); returns it and whether it is new (False: the key's
        earlier run). It starts as a trigger does, with the original's priority. 404 for a
        run unknown here, 409 while it has not finished, 422 for a step or override that
        does not fit."""
        check_document("overrides", overrides.document())  # before hashing, as a trigger
        request = {"replay_of": str(run_id), "from_step": from_step,
                   "overrides": overrides.document()}  # fmt: skip
        async with self.db.tenant_transaction(tenant_id) as conn:
            original = await _read_run(conn, tenant_id, run_id)
            replay = replays.plan(original, from_step, overrides, self.catalog)
            # The original's input too: another version may want another one.
            check_input(replay.definition, replay.input, ("body", "overrides", "input"))
            priority = await _priority(conn, tenant_id, run_id)
            gated = admission.gated(replay.definition, capped=self.capped, child=False)
            new = starting_run(tenant_id, replay.definition, replay.input, origin, priority,
                               gated=gated, replay=replay)  # fmt: skip
            new.idempotency_key = idempotency_key
            new.request_hash = canonical_hash(request)
            return await self._start(conn, tenant_id, new)

    async def _start(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, new: NewRun
    ) -> tuple[RunRecord, bool]:
        """Start `new` unless its idempotency key started a run before: then that run, or a
        422 when the key came with another request."""
        earlier = await self.store.start(conn, new)
        if earlier is None:
            return new.run, True
        if earlier.request_hash != new.request_hash:
            raise InvalidInput(
                "this Idempotency-Key was used with a different request; use a new key",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with another body",
                         "type": "idempotency.mismatch"}],
            )  # fmt: skip
        return await _read_run(conn, tenant_id, earlier.run_id), False

    async def get(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        async with self.db.tenant_read(tenant_id) as conn:
            return await _read_run(conn, tenant_id, run_id)

    async def status(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> run_reads.StatusDocument:
        """The run's status as the API answers it, read in one statement."""
        return await run_reads.read_status(self.db, tenant_id, run_id)

    async def run_page(
        self,
        tenant_id: uuid.UUID,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: run_reads.RunKey | None = None,
        limit: int = 50,
    ) -> JsonPage[run_reads.RunKey]:
        """A page of the run list as the API answers it, newest first, in one statement;
        `before` is the (created_at, id) of the last run of the previous page."""
        return await run_reads.read_run_page(
            self.db, tenant_id, status=status, workflow_name=workflow_name, since=since,
            until=until, before=before, limit=limit,
        )  # fmt: skip

    async def log_page(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, *, after: tuple[int, int] | None, limit: int
    ) -> JsonPage[str]:
        """A page of the run's log as the API answers it, in one statement (404 when the run
        is unknown here)."""
        return await run_reads.read_log_page(self.db, tenant_id, run_id, after=after, limit=limit)

    async def logs(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        *,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> tuple[RunRecord, list[LogEntry]]:
        """The run (404 when unknown here) and its log entries after `after`, in order.

        Entries of one run are ordered by (position, index), which is their commit order: a
        run's events are appended one after another (each needs the version before it)."""
        async with self.db.tenant_read(tenant_id) as conn:
            run = await _read_run(conn, tenant_id, run_id)
            return run, await read_entries(conn, run_id, after=after, limit=limit)

    async def holds_steps(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        """Whether a worker still holds one of the run's steps (a step interrupted by a cancel
        or a failure records its outcome after the run's)."""
        async with self.db.tenant_read(tenant_id) as conn:
            return bool(await queue.held_steps(conn, run_id))

    async def cancel(self, tenant_id: uuid.UUID, run_id: uuid.UUID, origin: Origin) -> RunRecord:
        """Ask a run to stop: steps not started never start, running ones are interrupted by
        their worker, and the run ends `cancelled`. Idempotent; 409 once the run finished."""
        async with self.db.tenant_transaction(tenant_id) as conn:
            run = await lock_run(conn, tenant_id, run_id)
            if run.status in RUN_FINISHED and run.status != RunStatus.cancelled:
                raise Conflict(f"run {run_id} already finished: {run.status}")
            if run.status in (RunStatus.cancelling, RunStatus.cancelled):
                return await _read_run(conn, tenant_id, run_id)
            # Drop the waiting tasks before reading who holds steps: a task given back after
            # the read would otherwise be dropped with its step left unsettled.
            await queue.drop_waiting(conn, run_id)
            full = await _read_run(conn, tenant_id, run_id)
            definition = WorkflowDefinition.model_validate(full.definition)
            state = run_state(full, await queue.held_steps(conn, run_id))
            decision = scheduler.cancel(definition, state, origin.actor)
            meta = origin.metadata()
            events = [NewEvent(kind, data, meta) for kind, data in decision.events]
            await append_run_events(conn, tenant_id, run_id, events, locked=True)
            mark_commit(conn, RUN_CANCELLED)
            if child_runs.related(full):  # a parent woken, children's cancels queued
                mark_commit(conn, queue.TASKS_READY)
            return await _read_run(conn, tenant_id, run_id)

    async def retry(self, tenant_id: uuid.UUID, run_id: uuid.UUID, origin: Origin) -> RunRecord:
        """Continue a failed or cancelled run from the steps that did not complete, keeping
        the outputs of those that did (`scheduler.retry`); the run's `timeout` counts again
        from now. 409 for a run in any other status, or one a worker still holds a step of."""
        async with self.db.tenant_transaction(tenant_id) as conn:
            run = await lock_run(conn, tenant_id, run_id)
            if run.status not in (RunStatus.failed, RunStatus.cancelled):
                raise Conflict(f"only a failed or cancelled run can be retried: it is {run.status}")
            # Drop the waiting tasks before asking who holds what (as a cancel does): one
            # claimed in between would otherwise survive next to the retry's own.
            await queue.drop_waiting(conn, run_id)
            held = await queue.leased_tasks(conn, run_id)
            if held:
                names = ", ".join(sorted(held))
                raise Conflict(f"run {run_id} still has work being stopped ({names}): retry soon")
            full = await _read_run(conn, tenant_id, run_id)
            definition = WorkflowDefinition.model_validate(full.definition)
            state = run_state(full, frozenset())
            decision = scheduler.retry(definition, state)
            meta = origin.metadata()
            events = [NewEvent(kind, data, meta) for kind, data in decision.events]
            priority = await _priority(conn, tenant_id, run_id)
            await append_run_events(conn, tenant_id, run_id, events, locked=True)
            ready = [
                queue.NewTask(tenant_id, run_id, step_id, correlation_id=origin.correlation_id,
                              attempt=scheduler.next_attempt(decision.state, step_id),
                              priority=priority)
                for step_id in decision.ready
            ]  # fmt: skip
            if decision.finished:  # every step had completed: its output failed before
                ready.append(queue.NewTask(tenant_id, run_id, queue.FINISH,
                                           priority=queue.RUN_LEVEL_PRIORITY,
                                           correlation_id=origin.correlation_id))  # fmt: skip
            if definition.timeout is not None:
                deadline = datetime.now(UTC) + timedelta(seconds=definition.timeout)
                ready.append(queue.NewTask(tenant_id, run_id, queue.DEADLINE,
                                           available_at=deadline,
                                           priority=queue.RUN_LEVEL_PRIORITY))  # fmt: skip
            await queue.enqueue(conn, ready)
            return await _read_run(conn, tenant_id, run_id)


async def _priority(conn: AsyncConnection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> int:
    """The priority the run was triggered with (its `WorkflowTriggered` event says)."""
    [triggered] = await read_aggregate(conn, tenant_id, str(run_id), limit=1)
    return int(triggered.data.get("priority", 0))


def check_input(
    definition: WorkflowDefinition, data: Any, where: tuple[str, ...] = ("body", "data")
) -> None:
    """422 with one entry per problem when `data` does not match the input schema; `where`:
    the location of `data` in the request."""
    validator = Draft202012Validator(definition.input_schema)
    problems = sorted(validator.iter_errors(data), key=lambda error: list(error.absolute_path))
    if not problems:
        return
    errors = [
        {
            "loc": [*where, *error.absolute_path],
            "msg": error.message,
            "type": f"schema.{error.validator}",
        }
        for error in problems[:MAX_ERRORS]
    ]
    raise InvalidInput(
        f"`{where[-1]}` does not match the input schema of {definition.name} version "
        f"{definition.version}",
        errors=errors,
    )


def starting_run(
    tenant_id: uuid.UUID,
    definition: WorkflowDefinition,
    data: Any,
    origin: Origin,
    priority: int,
    *,
    run_id: uuid.UUID | None = None,
    parent: tuple[uuid.UUID, str] | None = None,
    gated: bool = False,
    replay: replays.Replay | None = None,
) -> NewRun:
    """The run a trigger starts: its rows as `WorkflowTriggered` folds them, and the tasks of
    the steps that need nothing (and of its deadline); the steps' spans join the trigger's
    trace. `parent`: the run and step that start it as their child. `gated`: a limit applies
    to it, and its first task is its admission (`engine/admission.py`) instead. `replay`: the
    steps it reuses start completed, and its first tasks are the steps after them."""
    run_id = run_id or uuid.uuid4()
    payload: dict[str, Any] = {"definition": definition.document(), "input": data}
    if priority:
        payload["priority"] = priority
    if parent is not None:
        payload["parent"] = {"run_id": str(parent[0]), "step_id": parent[1]}
    if gated:
        payload["gated"] = True
    if replay is not None:
        payload["replay"] = replay.event_data()
    metadata = origin.metadata()
    at = datetime.now(UTC)
    run = new_run(run_id, tenant_id, FoldedEvent(RunEvent.triggered, payload, metadata, 1, at))
    trace_context = tracing.inject()
    reused = replay.outputs if replay is not None else ()
    starts = [queue.ADMIT] if gated else replays.first_steps(run.definition["steps"], reused)
    first = [
        queue.NewTask(tenant_id, run_id, step_id, correlation_id=origin.correlation_id,
                      trace_context=trace_context, priority=priority)
        for step_id in starts
    ]  # fmt: skip
    if definition.timeout is not None:
        deadline = at + timedelta(seconds=definition.timeout)
        first.append(queue.NewTask(tenant_id, run_id, queue.DEADLINE, available_at=deadline,
                                   priority=queue.RUN_LEVEL_PRIORITY))  # fmt: skip
    return NewRun(run, payload, metadata, first)


async def append_run_events(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    events: list[NewEvent],
    *,
    expected_version: int | None = None,
    locked: bool = False,
) -> None:
    """`locked`: the caller holds the run's lock (`lock_run`), which every appender to a
    started run takes, so the append cannot conflict."""
    recorded = await append_events(
        conn,
        tenant_id=tenant_id,
        aggregate_type=RUN_AGGREGATE,
        aggregate_id=str(run_id),
        new_events=events,
        expected_version=expected_version,
        exclusive=locked,
    )
    await count_run_events(conn, recorded)


async def lock_run(conn: AsyncConnection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
    """The run, locked until the transaction ends (PostgreSQL; SQLite serialises writers):
    every transaction that changes a run's course goes through here, one at a time, so two
    steps finishing together cannot both miss that their join became ready."""
    row = (
        await conn.execute(
            select(workflow_runs)
            .where(workflow_runs.c.id == run_id, workflow_runs.c.tenant_id == tenant_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return RunRecord(**row._mapping)


async def _read_run(conn: AsyncConnection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
    run = await load_run(conn, run_id)
    if run is None or run.tenant_id != tenant_id:
        raise NotFound(f"no run {run_id}")
    return run


def run_state(run: RunRecord, held: Iterable[str] = ()) -> scheduler.RunState:
    """What the scheduling rules see of `run`; `held`: the steps a worker holds."""
    return scheduler.RunState(
        RunStatus(run.status),
        {
            s.step_id: scheduler.StepState(StepStatus(s.status), s.attempts, s.error)
            for s in run.steps
        },
        frozenset(held),
    )


def _request_hash(name: str, version: int | None, data: Any, priority: int = 0) -> str:
    """SHA-256 of the request in canonical JSON (sorted keys, no spaces): key order and
    whitespace never make two equal requests differ (JSONB reorders keys: pitfall 7 in
    docs/architecture.md). A default priority is left out, as before priorities existed."""
    request = {"workflow_name": name, "version": version, "data": data}
    if priority:
        request["priority"] = priority
    return canonical_hash(request)


def canonical_hash(request: Mapping[str, Any]) -> str:
    """SHA-256 of `request` in canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        request,
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    )  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_context(run: RunRecord, env: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """What expressions see: `input`, `steps.<id>.output` (and `.status`), `run`, and the
    environment variables the operator exposed (`WORKFLOW_ENV`) as `env`."""
    return {
        "env": dict(env or {}),
        "input": run.input,
        "steps": {
            step.step_id: {"output": step.output, "status": step.status} for step in run.steps
        },
        "run": {
            "id": str(run.id),
            "workflow": run.workflow_name,
            "version": run.workflow_version,
            "created_at": run.created_at.isoformat(),
        },
    }


# Exactly the statuses of the partial index `ix_workflow_runs_active_status` (migration 0015),
# so that counting them reads the index, not the table.
ACTIVE_STATUSES = (RunStatus.queued, RunStatus.running, RunStatus.waiting, RunStatus.cancelling)


async def count_active(conn: AsyncConnection) -> dict[str, int]:
    """Runs still going in every tenant, by status (queued, running, waiting, cancelling)."""
    counts: dict[str, int] = dict.fromkeys(ACTIVE_STATUSES, 0)
    found = await conn.execute(
        select(workflow_runs.c.status, func.count())
        .where(workflow_runs.c.status.in_(ACTIVE_STATUSES))
        .group_by(workflow_runs.c.status)
    )
    counts.update((status, count) for status, count in found)
    return counts
