"""The run read model's fold, pure: a run's row and its steps' rows after one run event.

`workflow_runs` and `step_runs` are this fold of the run's events. The engine's store folds
the events of a transition in memory and writes the rows that changed in the same round
trip as the events; the `RunsProjection` folds one event at a time for a rebuild. Both use
`fold`, so the read model cannot depend on which path wrote it.

A fold gives the same rows in any order of the events it is given (a rebuild on PostgreSQL
may meet a run's events out of version order): a step never goes back to an earlier attempt,
a finished step or run never changes status again, and `steps_done` is counted, not
incremented. The one exception is `WorkflowRetried`, which reopens a failed or cancelled run:
it is appended only under the run's lock once the run has ended and no worker holds a step of
it, so no event of the run's earlier course can come after it in the log.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from workflow_engine.engine.records import RunRecord, StepRecord
from workflow_engine.engine.run_events import FINAL_STATUS, RunEvent
from workflow_engine.engine.states import RUN_FINISHED, STEP_FINISHED, RunStatus, StepStatus


@dataclasses.dataclass(frozen=True)
class FoldedEvent:
    """What the fold reads of an event (a `RecordedEvent` has all of it)."""

    event_type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    version: int
    recorded_at: datetime


def new_run(run_id: uuid.UUID, tenant_id: uuid.UUID, event: FoldedEvent) -> RunRecord:
    """The run as its `WorkflowTriggered` event starts it. A replay's event names the steps
    it reuses and their outputs: they start completed, without an attempt of this run."""
    definition = event.data["definition"]
    replay = event.data.get("replay") or {}
    reused = replay.get("outputs", {})
    steps = tuple(
        _reused(step["id"], step["uses"], reused[step["id"]], event.recorded_at)
        if step["id"] in reused else _pending(step["id"], step["uses"])
        for step in definition["steps"]
    )  # fmt: skip
    parent = event.data.get("parent") or {}
    return RunRecord(
        id=run_id, tenant_id=tenant_id, workflow_name=definition["name"],
        workflow_version=definition["version"], status=RunStatus.queued,
        input=event.data["input"], output=None, error=None, definition=definition,
        steps_total=len(steps), steps_done=len(reused),
        correlation_id=event.metadata.get("correlation_id"),
        created_at=event.recorded_at, started_at=None, finished_at=None,
        updated_at=event.recorded_at, version=event.version, steps=steps,
        parent_run_id=uuid.UUID(parent["run_id"]) if parent else None,
        parent_step_id=parent.get("step_id"), gated=bool(event.data.get("gated")),
        replay_of_run_id=uuid.UUID(replay["of"]) if replay else None,
        replay_from_step=replay.get("from_step"),
    )  # fmt: skip


def fold_events(
    run: RunRecord, events: Sequence[tuple[str, Mapping[str, Any]]], at: datetime | None = None
) -> RunRecord:
    """`run` after `events` (of types other than `WorkflowTriggered`), as if appended now."""
    moment = at or datetime.now(UTC)
    for offset, (event_type, data) in enumerate(events, start=1):
        run = fold(run, FoldedEvent(event_type, data, {}, run.version + offset, moment))
    return run


def _pending(step_id: str, uses: str) -> StepRecord:
    return StepRecord(
        step_id=step_id, uses=uses, status=StepStatus.pending, attempts=0, output=None,
        error=None, next_attempt_at=None, started_at=None, finished_at=None,
    )  # fmt: skip


def _reused(step_id: str, uses: str, output: Any, at: datetime) -> StepRecord:
    # Attempt 0: no attempt of this run made it (what tells a reused step from one that ran).
    return StepRecord(
        step_id=step_id, uses=uses, status=StepStatus.completed, attempts=0, output=output,
        error=None, next_attempt_at=None, started_at=None, finished_at=at,
    )  # fmt: skip


def fold(run: RunRecord, event: FoldedEvent) -> RunRecord:
    """`run` after `event` (any run event but `WorkflowTriggered`, which `new_run` folds)."""
    if event.event_type not in _KINDS:
        return _versioned(run, event)
    kind = RunEvent(event.event_type)
    at = event.recorded_at
    data = event.data
    if kind is RunEvent.cancel_requested:
        if run.status not in RUN_FINISHED:
            run = dataclasses.replace(run, status=RunStatus.cancelling, updated_at=at)
    elif kind is RunEvent.retried:
        if run.status in (RunStatus.failed, RunStatus.cancelled):
            run = _retried(run, frozenset(data.get("steps", ())), at)
    elif kind in FINAL_STATUS:
        if run.status not in RUN_FINISHED:
            run = dataclasses.replace(
                run, status=FINAL_STATUS[kind], output=data.get("output"),
                error=data.get("error"), finished_at=at, updated_at=at,
            )  # fmt: skip
    elif kind in _STEP_FOLDS:
        run = _fold_step(run, kind, data, at)
    return _versioned(run, event)


def _retried(run: RunRecord, again: frozenset[str], at: datetime) -> RunRecord:
    steps = tuple(
        dataclasses.replace(step, status=StepStatus.pending, output=None, error=None,
                            next_attempt_at=None, started_at=None, finished_at=None)
        if step.step_id in again else step
        for step in run.steps
    )  # fmt: skip
    return dataclasses.replace(
        run, status=RunStatus.running, output=None, error=None, finished_at=None, steps=steps,
        steps_done=sum(1 for s in steps if s.status in STEP_FINISHED), updated_at=at,
    )  # fmt: skip


def _fold_step(run: RunRecord, kind: RunEvent, data: Mapping[str, Any], at: datetime) -> RunRecord:
    step_id = data["step_id"]
    index = next((i for i, s in enumerate(run.steps) if s.step_id == step_id), None)
    if index is None:
        return run
    step = run.steps[index]
    changed = _STEP_FOLDS[kind](step, data, at)
    if kind is RunEvent.step_started and run.status == RunStatus.queued:
        run = dataclasses.replace(run, status=RunStatus.running, started_at=at, updated_at=at)
    if changed is step:
        return run
    steps = (*run.steps[:index], changed, *run.steps[index + 1 :])
    activity = _activity(run, steps)
    if activity != run.status:
        run = dataclasses.replace(run, status=activity, updated_at=at)
    if changed.status in STEP_FINISHED:
        done = sum(1 for s in steps if s.status in STEP_FINISHED)
        return dataclasses.replace(run, steps=steps, steps_done=done, updated_at=at)
    return dataclasses.replace(run, steps=steps)


def _activity(run: RunRecord, steps: tuple[StepRecord, ...]) -> str:
    """A started run is `waiting` while a step of it waits (`sleep`) and nothing else of it
    runs, is scheduled to retry, or is ready to start; `running` otherwise."""
    if run.status not in (RunStatus.running, RunStatus.waiting):
        return run.status
    status = {step.step_id: step.status for step in steps}
    if StepStatus.waiting not in status.values():
        return RunStatus.running
    if any(s in (StepStatus.running, StepStatus.scheduled) for s in status.values()):
        return RunStatus.running
    for spec in run.definition.get("steps", ()):
        needs = spec.get("needs", ())
        if status.get(spec["id"]) == StepStatus.pending and all(
            status.get(need) in STEP_FINISHED for need in needs
        ):
            return RunStatus.running
    return RunStatus.waiting


def _started(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    attempt = int(data["attempt"])
    if step.attempts >= attempt or step.status in STEP_FINISHED:
        return step
    return dataclasses.replace(
        step, status=StepStatus.running, attempts=attempt, started_at=at, next_attempt_at=None
    )


def _waiting(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    attempt = int(data["attempt"])
    if step.attempts > attempt or step.status in STEP_FINISHED:
        return step
    return dataclasses.replace(
        step, status=StepStatus.waiting, attempts=attempt,
        next_attempt_at=None if data["until"] is None else datetime.fromisoformat(data["until"]),
    )  # fmt: skip


def _completed(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    return _finished(step, data, at, StepStatus.completed, output=data.get("output"))


def _failed(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    attempt = int(data["attempt"])
    retry_at = data.get("retry_at")
    if retry_at is None:
        return _finished(step, data, at, StepStatus.failed, error=data.get("error"))
    if step.attempts > attempt:
        return step
    return dataclasses.replace(
        step, status=StepStatus.scheduled, attempts=attempt, error=data.get("error"),
        next_attempt_at=datetime.fromisoformat(retry_at),
    )  # fmt: skip


def _skipped(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    return _finished(step, data, at, StepStatus.skipped)


def _cancelled(step: StepRecord, data: Mapping[str, Any], at: datetime) -> StepRecord:
    # Whatever attempt it was at: a cancel settles any step that has not finished.
    if step.status in STEP_FINISHED:
        return step
    return dataclasses.replace(
        step, status=StepStatus.cancelled, finished_at=at, next_attempt_at=None
    )


def _finished(
    step: StepRecord,
    data: Mapping[str, Any],
    at: datetime,
    status: StepStatus,
    *,
    output: Any = None,
    error: Any = None,
) -> StepRecord:
    attempt = int(data.get("attempt", 0))
    if step.attempts > attempt:
        return step
    return dataclasses.replace(
        step, status=status, attempts=attempt, output=output, error=error, finished_at=at,
        next_attempt_at=None,
    )  # fmt: skip


def _versioned(run: RunRecord, event: FoldedEvent) -> RunRecord:
    if event.version <= run.version:
        return run
    return dataclasses.replace(run, version=event.version)


_STEP_FOLDS = {
    RunEvent.step_started: _started,
    RunEvent.step_waiting: _waiting,
    RunEvent.step_completed: _completed,
    RunEvent.step_failed: _failed,
    RunEvent.step_skipped: _skipped,
    RunEvent.step_cancelled: _cancelled,
}
_KINDS = frozenset(RunEvent)
