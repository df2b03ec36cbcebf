"""The scheduling rules: what happens to a run when one of its steps ends, is cancelled or
runs out of time. Pure: no I/O and no clock or randomness of its own — the caller passes the
time and the jitter — so every rule is a table-driven unit test.

The caller (the worker, the cancel of the runs service) holds the run's state as it last read
it, asks for a `Decision`, and records it in one transaction: the events, the tasks to drop
and to enqueue. `RunState.apply` is the same fold the run read model makes of those events,
so the state after a decision is known without reading it back.

Rules:

- A step is *ready* when every step it needs finished well: completed, skipped, cancelled, or
  failed with `continue_on_error`. A ready step whose need was skipped or cancelled is itself
  skipped at once, unless it sets `run_if_needs_skipped` (the skip cascade).
- A failed attempt is retried when its error is retryable, the policy allows another attempt
  and, with `retry_on`, lists its class; the next attempt waits
  `min(initial_delay * backoff^(attempt-1), max_delay)` spread by `jitter`.
- A step that fails for good without `continue_on_error` fails the run (fail fast): steps no
  worker holds are cancelled, waiting tasks dropped.
- A run being cancelled ends `cancelled` once no worker holds one of its steps.
- When every step has finished, the run's output is due (`Decision.finished`).
- A failed or cancelled run may be retried (`retry`): the steps that did not complete are
  pending again and run with their next attempt number; completed steps keep their outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from workflow_engine.engine.definitions import RetryPolicy, StepDefinition, WorkflowDefinition
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.states import (
    RUN_ACTIVE,
    STEP_FINISHED,
    Outcome,
    RunStatus,
    StepStatus,
)

# Statuses of a need that let the steps after it run.
_NEED_MET = frozenset({StepStatus.completed, StepStatus.skipped, StepStatus.cancelled})
_NEED_SKIPPED = frozenset({StepStatus.skipped, StepStatus.cancelled})


@dataclass(frozen=True)
class StepState:
    status: StepStatus = StepStatus.pending
    attempts: int = 0
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunState:
    """What the rules look at: the run's status, each step's, and which steps a worker holds
    (their task is leased: the worker will record their outcome)."""

    status: RunStatus
    steps: Mapping[str, StepState]
    held: frozenset[str] = frozenset()

    @classmethod
    def new(cls, definition: WorkflowDefinition) -> RunState:
        return cls(RunStatus.queued, {step.id: StepState() for step in definition.steps})

    def apply(self, event: RunEvent, data: Mapping[str, Any]) -> RunState:
        """The state after `event` (the fold the run read model makes, in memory)."""
        step_id = data.get("step_id")
        step = self.steps.get(step_id) if isinstance(step_id, str) else None
        status = self.status
        if event is RunEvent.cancel_requested and status not in _RUN_ENDED:
            return replace(self, status=RunStatus.cancelling)
        if event is RunEvent.retried:
            if status not in (RunStatus.failed, RunStatus.cancelled):
                return self
            again = {name: StepState(StepStatus.pending, self.steps[name].attempts)
                     for name in data.get("steps", ()) if name in self.steps}  # fmt: skip
            return replace(self, status=RunStatus.running, steps={**self.steps, **again})
        if event in _RUN_ENDING and status not in _RUN_ENDED:
            return replace(self, status=_RUN_ENDING[event])
        if step is None or step_id is None:
            return self
        attempt = int(data.get("attempt", step.attempts))
        if event is RunEvent.step_started:
            if step.status in STEP_FINISHED or attempt <= step.attempts:
                return self
            status = RunStatus.running if status is RunStatus.queued else status
            changed = StepState(StepStatus.running, attempt, step.error)
        elif event is RunEvent.step_waiting:
            if step.status in STEP_FINISHED or attempt < step.attempts:
                return self
            changed = StepState(StepStatus.waiting, attempt, step.error)
        elif event is RunEvent.step_cancelled:
            if step.status in STEP_FINISHED:
                return self
            changed = replace(step, status=StepStatus.cancelled)
        elif event in _STEP_ENDING:
            if attempt < step.attempts:
                return self
            if event is RunEvent.step_failed and data.get("retry_at") is not None:
                changed = StepState(StepStatus.scheduled, attempt, data.get("error"))
            else:
                error = data.get("error") if event is RunEvent.step_failed else None
                changed = StepState(_STEP_ENDING[event], attempt, error)
        else:
            return self
        return replace(self, status=status, steps={**self.steps, step_id: changed})


_RUN_ENDED = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled})
_RUN_ENDING = {
    RunEvent.completed: RunStatus.completed,
    RunEvent.failed: RunStatus.failed,
    RunEvent.cancelled: RunStatus.cancelled,
}
_STEP_ENDING = {
    RunEvent.step_completed: StepStatus.completed,
    RunEvent.step_failed: StepStatus.failed,
    RunEvent.step_skipped: StepStatus.skipped,
}


@dataclass(frozen=True)
class StepResult:
    """How an attempt ended: what the worker reports."""

    outcome: Outcome
    output: Any = None
    error: Mapping[str, Any] | None = None  # {"class", "message", "retryable"}; for skipped: reason
    retryable: bool = False
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Retry:
    step_id: str
    attempt: int
    at: datetime


@dataclass
class Decision:
    """What to record, in one transaction. `events` are (type, data) in order."""

    state: RunState
    events: list[tuple[RunEvent, dict[str, Any]]] = field(default_factory=list)
    # Steps this decision made ready, to enqueue (attempt 1). A step that was ready before
    # already has its task: the decision that made it ready enqueued it.
    ready: list[str] = field(default_factory=list)
    retry: Retry | None = None
    # The run stopped: the waiting tasks of these steps (those it cancelled) are dropped. Only
    # theirs: a task given back by its worker after the decision was made survives, and its
    # next claimer finds the run stopped and settles the step.
    dropped: list[str] = field(default_factory=list)
    finished: bool = False  # every step has finished: the run's output is due
    counted: str | None = None  # the metric outcome of the settled attempt, if one was recorded

    def record(self, event: RunEvent, data: dict[str, Any]) -> None:
        self.events.append((event, data))
        self.state = self.state.apply(event, data)


def settle(
    definition: WorkflowDefinition,
    state: RunState,
    step_id: str,
    attempt: int,
    result: StepResult,
    *,
    now: datetime,
    jitter: float = 0.0,
) -> Decision:
    """Record how attempt `attempt` of `step_id` ended, then move the run along.

    `state` must not count the step as held (its task is the caller's, being finished).
    `jitter` in [-1, 1] picks where in the policy's jitter band a retry falls."""
    decision = Decision(state)
    step = definition.step(step_id)
    base: dict[str, Any] = {"step_id": step_id, "attempt": attempt}
    current = state.steps[step_id].status
    if current in STEP_FINISHED:
        pass  # settled already (the run was cancelled while the task waited)
    elif result.outcome is Outcome.completed:
        data = {**base, "output": result.output, "duration_ms": result.duration_ms}
        decision.record(RunEvent.step_completed, data)
        decision.counted = "completed"
    elif result.outcome is Outcome.skipped:
        decision.record(RunEvent.step_skipped, {**base, **(result.error or {})})
        decision.counted = "skipped"
    elif result.outcome is Outcome.cancelled or state.status not in RUN_ACTIVE:
        decision.record(RunEvent.step_cancelled, base)
        decision.counted = "cancelled"
    else:
        at = retry_at(step.retry, attempt, result, now=now, jitter=jitter)
        failed: dict[str, Any] = {**base, "error": dict(result.error or {})}
        if at is not None:
            failed["retry_at"] = at.isoformat()
            decision.retry = Retry(step_id, attempt + 1, at)
        decision.record(RunEvent.step_failed, failed)
        decision.counted = "retried" if at is not None else "failed"
    _advance(definition, decision, state)
    return decision


def cancel(definition: WorkflowDefinition, state: RunState, actor: str) -> Decision:
    """Ask an unfinished run to stop: steps no worker holds are cancelled at once; the run
    ends `cancelled` when none is held, else `cancelling` until their workers report."""
    decision = Decision(state)
    decision.record(RunEvent.cancel_requested, {})
    _stop_idle_steps(definition, decision)
    if not state.held:
        error = {"class": "cancelled", "message": f"cancelled by {actor}"}
        decision.record(RunEvent.cancelled, {"error": error})
    return decision


def retry(definition: WorkflowDefinition, state: RunState) -> Decision:
    """Continue a failed or cancelled run that no worker holds a step of: every step that did
    not complete is pending again (keeping its attempt count, so its next attempt is a new
    one), completed steps keep their outputs, and the steps whose needs are met are ready."""
    decision = Decision(state)
    again = [step.id for step in definition.steps
             if state.steps[step.id].status is not StepStatus.completed]  # fmt: skip
    decision.record(RunEvent.retried, {"steps": again})
    _advance(definition, decision, None)
    return decision


def next_attempt(state: RunState, step_id: str) -> int:
    """The attempt a step starts next: 1, or one more than a retried run's earlier attempts."""
    return state.steps[step_id].attempts + 1


def fail(definition: WorkflowDefinition, state: RunState, error: Mapping[str, Any]) -> Decision:
    """Fail an active run (its deadline passed, its output failed, the engine gave up)."""
    decision = Decision(state)
    _fail_run(definition, decision, dict(error))
    return decision


def retry_at(
    policy: RetryPolicy | None,
    attempt: int,
    result: StepResult,
    *,
    now: datetime,
    jitter: float = 0.0,
) -> datetime | None:
    """When the next attempt runs, or None when the failure is final."""
    if policy is None or not result.retryable or attempt >= policy.max_attempts:
        return None
    error_class = (result.error or {}).get("class")
    if policy.retry_on is not None and error_class not in policy.retry_on:
        return None
    delay = min(policy.initial_delay * policy.backoff ** (attempt - 1), policy.max_delay)
    delay *= 1 + policy.jitter * max(-1.0, min(1.0, jitter))
    return now + timedelta(seconds=max(0.0, delay))


def skip_reason(step: StepDefinition, state: RunState) -> str | None:
    """Why `step` is skipped without running, or None: a need of it was skipped or cancelled."""
    if step.run_if_needs_skipped:
        return None
    for need in step.needs:
        status = state.steps[need].status
        if status in _NEED_SKIPPED:
            return f"it needs {need!r}, which was {status}"
    return None


def _advance(definition: WorkflowDefinition, decision: Decision, before: RunState | None) -> None:
    """`before`: the state before the decision, whose ready steps have their tasks already
    (None: list every ready step: the decision started nothing)."""
    state = decision.state
    if state.status is RunStatus.cancelling:
        if not state.held:
            error = {"class": "cancelled", "message": "cancelled on request"}
            decision.record(RunEvent.cancelled, {"error": error})
        return
    if state.status not in RUN_ACTIVE:
        return
    fatal = next((s for s in definition.steps if _failed_for_good(s, state)), None)
    if fatal is not None:
        _fail_run(
            definition, decision, {"step_id": fatal.id, **(state.steps[fatal.id].error or {})}
        )
        return
    while True:  # the skip cascade: a skip can make more steps ready
        ready = [s for s in definition.steps if _ready(definition, s, decision.state)]
        skipped = [(s, reason) for s in ready if (reason := skip_reason(s, decision.state))]
        for step, reason in skipped:
            attempt = next_attempt(decision.state, step.id)
            decision.record(
                RunEvent.step_skipped, {"step_id": step.id, "attempt": attempt, "reason": reason}
            )
        if not skipped:
            break
    decision.ready = [s.id for s in ready if before is None or not _ready(definition, s, before)]
    decision.finished = all(s.status in STEP_FINISHED for s in decision.state.steps.values())


def _ready(definition: WorkflowDefinition, step: StepDefinition, state: RunState) -> bool:
    if state.steps[step.id].status is not StepStatus.pending:
        return False
    return all(_finished_well(definition.step(need), state) for need in step.needs)


def _finished_well(step: StepDefinition, state: RunState) -> bool:
    status = state.steps[step.id].status
    return status in _NEED_MET or (status is StepStatus.failed and step.continue_on_error)


def _failed_for_good(step: StepDefinition, state: RunState) -> bool:
    return state.steps[step.id].status is StepStatus.failed and not step.continue_on_error


def _fail_run(definition: WorkflowDefinition, decision: Decision, error: dict[str, Any]) -> None:
    _stop_idle_steps(definition, decision)
    decision.record(RunEvent.failed, {"error": error})


def _stop_idle_steps(definition: WorkflowDefinition, decision: Decision) -> None:
    held = decision.state.held
    for step in definition.steps:
        if decision.state.steps[step.id].status not in STEP_FINISHED and step.id not in held:
            decision.record(RunEvent.step_cancelled, {"step_id": step.id})
            decision.dropped.append(step.id)
