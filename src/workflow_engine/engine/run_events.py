"""The events on a run's aggregate: their type names, in one place, and what each ends in.

Every change to a run is one of these, appended to the aggregate `runs/<run id>`; the read
models (`run_projection`, `run_logs`) fold them and the event stream shows them live.
"""

from __future__ import annotations

from enum import StrEnum

from workflow_engine.engine.states import RunStatus

RUN_AGGREGATE = "runs"


class RunEvent(StrEnum):
    triggered = "WorkflowTriggered"
    cancel_requested = "WorkflowCancelRequested"
    retried = "WorkflowRetried"  # with `steps`: the unfinished ones, pending again
    completed = "WorkflowCompleted"
    failed = "WorkflowFailed"
    cancelled = "WorkflowCancelled"
    step_started = "StepStarted"
    step_waiting = "StepWaiting"  # with `until`: a durable wait (`sleep`) holds no worker
    step_logged = "StepLogged"
    step_recorded = "StepRecorded"  # with `entry`: one of the step's journal entries
    step_completed = "StepCompleted"
    step_failed = "StepFailed"  # with `retry_at` when another attempt follows
    step_skipped = "StepSkipped"
    step_cancelled = "StepCancelled"


# The event that ends a run, by the status it ends in (and back).
FINAL_EVENT = {
    RunStatus.completed: RunEvent.completed,
    RunStatus.failed: RunEvent.failed,
    RunStatus.cancelled: RunEvent.cancelled,
}
FINAL_STATUS = {event: status for status, event in FINAL_EVENT.items()}
