"""The run and step read models (`workflow_runs`, `step_runs`), folded from run events.

Every run event lives on the run's aggregate (type `runs`, id = the run id), so the event
stream shows a run's progress live, and these tables can be rebuilt by replay. Folds tolerate
events arriving out of order in a rebuild (see `events/projections.py`): a step never goes
back to an earlier attempt, a finished run never changes status, and `steps_done` is counted,
not incremented.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import step_runs, workflow_runs
from workflow_engine.engine.run_events import FINAL_STATUS, RUN_AGGREGATE, RunEvent
from workflow_engine.engine.states import RUN_FINISHED, STEP_FINISHED, RunStatus, StepStatus
from workflow_engine.events.projections import Projection
from workflow_engine.events.store import RecordedEvent


class RunsProjection(Projection):
    name = "workflow_runs"
    version = 1
    tables = (workflow_runs, step_runs)

    def wants(self, event: RecordedEvent) -> bool:
        return event.aggregate_type == RUN_AGGREGATE

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        fold = _FOLDS.get(RunEvent(event.event_type)) if event.event_type in _TYPES else None
        if fold is not None:
            await fold(conn, event)


async def _triggered(conn: AsyncConnection, event: RecordedEvent) -> None:
    data = event.data
    definition = data["definition"]
    run_id = _run_id(event)
    await conn.execute(
        workflow_runs.insert().values(
            id=run_id,
            tenant_id=event.tenant_id,
            workflow_name=definition["name"],
            workflow_version=definition["version"],
            status=RunStatus.queued,
            input=data["input"],
            definition=definition,
            steps_total=len(definition["steps"]),
            steps_done=0,
            correlation_id=event.metadata.get("correlation_id"),
            created_at=event.recorded_at,
            updated_at=event.recorded_at,
        )
    )
    await conn.execute(
        step_runs.insert(),
        [
            {
                "run_id": run_id,
                "step_id": step["id"],
                "tenant_id": event.tenant_id,
                "position": index,
                "uses": step["uses"],
                "status": StepStatus.pending,
                "attempts": 0,
            }
            for index, step in enumerate(definition["steps"])
        ],
    )


async def _step_started(conn: AsyncConnection, event: RecordedEvent) -> None:
    attempt = event.data["attempt"]
    await _update_step(
        conn, event, attempt, {"status": StepStatus.running, "attempts": attempt,
                               "started_at": event.recorded_at, "next_attempt_at": None},
        newer_only=True,
    )  # fmt: skip
    run = workflow_runs.c
    await conn.execute(
        update(workflow_runs)
        .where(run.id == _run_id(event), run.status == RunStatus.queued)
        .values(
            status=RunStatus.running, started_at=event.recorded_at, updated_at=event.recorded_at
        )
    )


async def _step_completed(conn: AsyncConnection, event: RecordedEvent) -> None:
    await _finish_step(
        conn,
        event,
        {"status": StepStatus.completed, "output": event.data.get("output"), "error": None},
    )


async def _step_failed(conn: AsyncConnection, event: RecordedEvent) -> None:
    retry_at = event.data.get("retry_at")
    if retry_at is not None:
        await _update_step(
            conn, event, event.data["attempt"],
            {"status": StepStatus.scheduled, "error": event.data["error"],
             "next_attempt_at": datetime.fromisoformat(retry_at)},
        )  # fmt: skip
        return
    await _finish_step(conn, event, {"status": StepStatus.failed, "error": event.data["error"]})


async def _step_skipped(conn: AsyncConnection, event: RecordedEvent) -> None:
    await _finish_step(conn, event, {"status": StepStatus.skipped, "error": None})


async def _step_cancelled(conn: AsyncConnection, event: RecordedEvent) -> None:
    # Whatever attempt it was at: a cancel settles any step that has not finished.
    step = step_runs.c
    await conn.execute(
        update(step_runs)
        .where(
            step.run_id == _run_id(event),
            step.step_id == event.data["step_id"],
            step.status.not_in(STEP_FINISHED),
        )
        .values(status=StepStatus.cancelled, finished_at=event.recorded_at, next_attempt_at=None)
    )
    await _count_done(conn, event)


async def _finish_step(conn: AsyncConnection, event: RecordedEvent, values: dict[str, Any]) -> None:
    attempt = event.data.get("attempt", 0)
    await _update_step(
        conn, event, attempt, {**values, "finished_at": event.recorded_at, "next_attempt_at": None}
    )
    await _count_done(conn, event)


async def _update_step(
    conn: AsyncConnection,
    event: RecordedEvent,
    attempt: int,
    values: dict[str, Any],
    *,
    newer_only: bool = False,
) -> None:
    """Update the step unless the row already reflects a later attempt (or, for a start, a
    finished step: its outcome was folded first)."""
    step = step_runs.c
    current = (
        and_(step.attempts < attempt, step.status.not_in(STEP_FINISHED))
        if newer_only
        else step.attempts <= attempt
    )
    await conn.execute(
        update(step_runs)
        .where(step.run_id == _run_id(event), step.step_id == event.data["step_id"], current)
        .values(attempts=attempt, **{k: v for k, v in values.items() if k != "attempts"})
    )


async def _count_done(conn: AsyncConnection, event: RecordedEvent) -> None:
    step = step_runs.c
    done = (
        select(func.count())
        .where(and_(step.run_id == _run_id(event), step.status.in_(STEP_FINISHED)))
        .scalar_subquery()
    )
    await conn.execute(
        update(workflow_runs)
        .where(workflow_runs.c.id == _run_id(event))
        .values(steps_done=done, updated_at=event.recorded_at)
    )


async def _run_finished(conn: AsyncConnection, event: RecordedEvent) -> None:
    status = FINAL_STATUS[RunEvent(event.event_type)]
    run = workflow_runs.c
    await conn.execute(
        update(workflow_runs)
        .where(run.id == _run_id(event), run.status.not_in(RUN_FINISHED))
        .values(
            status=status,
            output=event.data.get("output"),
            error=event.data.get("error"),
            finished_at=event.recorded_at,
            updated_at=event.recorded_at,
        )
    )


async def _cancel_requested(conn: AsyncConnection, event: RecordedEvent) -> None:
    run = workflow_runs.c
    await conn.execute(
        update(workflow_runs)
        .where(run.id == _run_id(event), run.status.not_in(RUN_FINISHED))
        .values(status=RunStatus.cancelling, updated_at=event.recorded_at)
    )


def _run_id(event: RecordedEvent) -> uuid.UUID:
    return uuid.UUID(event.aggregate_id)


_FOLDS = {
    RunEvent.triggered: _triggered,
    RunEvent.step_started: _step_started,
    RunEvent.step_completed: _step_completed,
    RunEvent.step_failed: _step_failed,
    RunEvent.step_skipped: _step_skipped,
    RunEvent.step_cancelled: _step_cancelled,
    RunEvent.completed: _run_finished,
    RunEvent.failed: _run_finished,
    RunEvent.cancelled: _run_finished,
    RunEvent.cancel_requested: _cancel_requested,
}
_TYPES = frozenset(RunEvent)
