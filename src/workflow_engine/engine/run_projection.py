"""The run and step read models (`workflow_runs`, `step_runs`) as a projection of run events.

Every run event lives on the run's aggregate (type `runs`, id = the run id), so the event
stream shows a run's progress live, and these tables can be rebuilt by replay. The engine's
own transitions write these rows themselves (`engine/store.py`, the same fold in memory); this
projection folds the events appended any other way — a trigger, a cancel — and rebuilds the
tables. Both use `run_fold.fold`, which gives the same rows in any order of events.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import step_runs, workflow_runs
from workflow_engine.engine.records import RunRecord, StepRecord
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.engine.run_fold import FoldedEvent, fold, new_run
from workflow_engine.events.projections import Projection
from workflow_engine.events.store import RecordedEvent

_RUN_ID = bindparam("run_id", type_=workflow_runs.c.id.type)
_RUN = select(workflow_runs).where(workflow_runs.c.id == _RUN_ID)
_STEPS = (
    select(
        step_runs.c.step_id, step_runs.c.uses, step_runs.c.status, step_runs.c.attempts,
        step_runs.c.output, step_runs.c.error, step_runs.c.next_attempt_at,
        step_runs.c.started_at, step_runs.c.finished_at,
    )
    .where(step_runs.c.run_id == _RUN_ID)
    .order_by(step_runs.c.position)
)  # fmt: skip
_RUN_COLUMNS = ("status", "output", "error", "steps_done", "started_at", "finished_at",
                "updated_at", "version")  # fmt: skip
_STEP_COLUMNS = ("status", "attempts", "output", "error", "next_attempt_at", "started_at",
                 "finished_at")  # fmt: skip


class RunsProjection(Projection):
    name = "workflow_runs"
    version = 2
    tables = (workflow_runs, step_runs)

    def wants(self, event: RecordedEvent) -> bool:
        return event.aggregate_type == RUN_AGGREGATE

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        run_id = uuid.UUID(event.aggregate_id)
        folded = FoldedEvent(
            event.event_type, event.data, event.metadata, event.version, event.recorded_at
        )
        if event.event_type == RunEvent.triggered:
            await _insert(conn, new_run(run_id, event.tenant_id, folded))
            return
        before = await load_run(conn, run_id)
        if before is None:
            return  # its trigger is not folded yet (a rebuild out of order): it will be
        await write_changes(conn, before, fold(before, folded))


async def load_run(conn: AsyncConnection, run_id: uuid.UUID) -> RunRecord | None:
    """The run's row with its steps' rows, in definition order; None when it has none."""
    row = (await conn.execute(_RUN, {"run_id": run_id})).first()
    if row is None:
        return None
    steps = tuple(StepRecord(**r._mapping) for r in await conn.execute(_STEPS, {"run_id": run_id}))
    return dataclasses.replace(RunRecord(**row._mapping), steps=steps)


async def _insert(conn: AsyncConnection, run: RunRecord) -> None:
    values = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name != "steps"}
    await conn.execute(workflow_runs.insert().values(values))
    await conn.execute(
        step_runs.insert(),
        [
            {**dataclasses.asdict(step), "run_id": run.id, "tenant_id": run.tenant_id,
             "position": index}
            for index, step in enumerate(run.steps)
        ],
    )  # fmt: skip


async def write_changes(conn: AsyncConnection, before: RunRecord, after: RunRecord) -> None:
    """Write the rows of `after` that differ from `before`."""
    if after == before:
        return
    changed = {
        c: getattr(after, c) for c in _RUN_COLUMNS if getattr(after, c) != getattr(before, c)
    }
    if changed:
        await conn.execute(
            update(workflow_runs).where(workflow_runs.c.id == after.id).values(changed)
        )
    for old, new in zip(before.steps, after.steps, strict=True):
        if old != new:
            await conn.execute(
                update(step_runs)
                .where(step_runs.c.run_id == after.id, step_runs.c.step_id == new.step_id)
                .values({c: getattr(new, c) for c in _STEP_COLUMNS})
            )
