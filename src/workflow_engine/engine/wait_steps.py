"""Steps the engine carries out itself, as a worker runs them: `sleep`, `wait.event`,
`workflow` and `approval` (what each waits for is in `waits`, `event_waits`, `child_runs` and
`approvals`).

`begin` runs once the step's attempt has started: it records the step waiting and gives its
task back to the queue, due when something may have happened (a wake time, at once for a
first check); `come_due` runs when a waiting step's task is claimed again, and completes the
step, fails it, or puts the task back. No worker slot is held in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from workflow_engine.db import Database
from workflow_engine.engine import (
    admission,
    approvals,
    child_runs,
    event_waits,
    expressions,
    queue,
    waits,
)
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import StepDefinition
from workflow_engine.engine.recorder import RunRecorder
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.runs import Origin, check_input, run_context, starting_run
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import RUN_ACTIVE, RunStatus
from workflow_engine.engine.states import Outcome as OutcomeKind
from workflow_engine.engine.step_runner import failure
from workflow_engine.errors import InvalidInput, NotFound
from workflow_engine.events.storable import check_document

Record = Callable[[queue.Task, StepResult], Awaitable[None]]
Evaluate = Callable[[Any, Mapping[str, Any]], Awaitable[Any]]


class WaitSteps:
    def __init__(
        self,
        db: Database,
        recorder: RunRecorder,
        catalog: DefinitionCatalog | None,
        env: Mapping[str, str],
        *,
        record: Record,
        evaluate: Evaluate,
    ) -> None:
        """`record`: records an attempt's outcome (and starts what it made ready);
        `evaluate`: evaluates a step's arguments against a run's context."""
        self.db = db
        self.recorder = recorder
        self.catalog = catalog
        self.env = env
        self._record = record
        self._evaluate = evaluate

    async def begin(
        self, task: queue.Task, run: RunRecord, step: StepDefinition, arguments: dict[str, Any]
    ) -> None:
        """The step's attempt has started: record it waiting and give its task back, due when
        it wakes; a wake time already past completes it now. A `wait.event` step's task is
        due at once: its first check (`_check_event`) finds an event that came already, or
        arms the wait."""
        if step.uses == waits.CHILD:
            await self._start_child(task, run, arguments)
            return
        if step.uses == waits.APPROVAL:
            await self._ask_approval(task, run, arguments)
            return
        if step.uses == waits.WAIT_EVENT:
            try:
                wait = event_waits.parse(arguments)
            except event_waits.EventWaitError as exc:
                await self._record(task, failure("bad_arguments", str(exc), retryable=False))
                return
            now = datetime.now(UTC)
            detail = {"event": wait.event_type, "aggregate": wait.aggregate_id}
            answer = await self.recorder.wait(task, wait.deadline(now), due=now, detail=detail)
            if answer == "inactive":
                await self._record(task, StepResult(OutcomeKind.cancelled))
            return
        try:
            until = waits.wake_time(arguments, datetime.now(UTC))
        except waits.WaitArgumentError as exc:
            await self._record(task, failure("bad_arguments", str(exc), retryable=False))
            return
        if until > datetime.now(UTC):
            answer = await self.recorder.wait(task, until)
            if answer != "inactive":
                return
            await self._record(task, StepResult(OutcomeKind.cancelled))
            return
        await self._record(task, _woken(until))

    async def come_due(self, task: queue.Task, run: RunRecord, step: StepDefinition) -> None:
        """A waiting step's task came due: complete a `sleep`. The queue's clock says when it
        is due (the database's, on PostgreSQL), not this machine's: a worker whose clock is
        behind would otherwise find it early and put it back, again and again."""
        if run.status not in RUN_ACTIVE:
            await self._record(task, StepResult(OutcomeKind.cancelled))
            return
        if step.uses == waits.WAIT_EVENT:
            await self._check_event(task, run, step)
            return
        if step.uses == waits.CHILD:
            await self._check_child(task)
            return
        if step.uses == waits.APPROVAL:
            await self._check_approval(task)
            return
        until = run.step(task.step_id).next_attempt_at
        assert until is not None  # a waiting step always has its wake time
        await self._record(task, _woken(until))

    async def _check_event(self, task: queue.Task, run: RunRecord, step: StepDefinition) -> None:
        """A `wait.event` step's task came due (its first check, an event, its timeout): take
        the event it matches, or time out, or put the task back until one of them comes. Its
        arguments are evaluated again: the run's context they read has not changed since."""
        try:
            wait = event_waits.parse(await self._evaluate(step.with_, run_context(run, self.env)))
        except (expressions.ExpressionError, event_waits.EventWaitError) as exc:
            await self._record(task, failure("bad_arguments", str(exc), retryable=False))
            return
        deadline = run.step(task.step_id).next_attempt_at
        async with self.db.transaction() as conn:
            found = await event_waits.check(conn, task, wait, deadline)
        if isinstance(found, event_waits.Took):
            await self._record(task, StepResult(OutcomeKind.completed, output=found.data))
        elif found == event_waits.TIMED_OUT:
            if wait.has_default:
                await self._record(task, StepResult(OutcomeKind.completed, output=wait.default))
            else:
                message = (
                    f"no {wait.event_type} event for {wait.aggregate_id!r} "
                    f"within {wait.timeout or 0:g} s"
                )
                await self._record(task, failure("timeout", message, retryable=True))

    async def _start_child(
        self, task: queue.Task, run: RunRecord, arguments: dict[str, Any]
    ) -> None:
        """Start the attempt's child run (unless an earlier try of it did), then wait for it:
        the step's task is due at once, and its check puts it back until the child ends."""
        try:
            call = child_runs.parse(arguments)
            if self.catalog is None:
                raise child_runs.ChildArgumentError("this worker was started without workflows")
            definition = self.catalog.get(call.name, call.version)
            check_document("data", call.data)
            check_input(definition, call.data)
        except (child_runs.ChildArgumentError, NotFound, InvalidInput) as exc:
            await self._record(task, failure("bad_arguments", _problem_text(exc), retryable=False))
            return
        child = child_runs.child_id(task)
        origin = Origin(f"run:{run.id}", task.correlation_id, "worker")
        gated = admission.gated(definition, capped=False, child=True)
        new = starting_run(run.tenant_id, definition, call.data, origin, task.priority,
                           run_id=child, parent=(run.id, task.step_id), gated=gated)  # fmt: skip
        async with self.db.tenant_transaction(run.tenant_id) as conn:
            started = await child_runs.exists(conn, child)
            too_deep = not started and await child_runs.depth(conn, run) >= child_runs.MAX_DEPTH
            if not started and not too_deep:
                await self.recorder.store.start(conn, new)
        if too_deep:
            message = f"children nest at most {child_runs.MAX_DEPTH} deep"
            await self._record(task, failure("bad_arguments", message, retryable=False))
            return
        detail = {"child_run_id": str(child)}
        answer = await self.recorder.wait(task, None, due=datetime.now(UTC), detail=detail)
        if answer == "inactive":
            await self._record(task, StepResult(OutcomeKind.cancelled))

    async def _check_child(self, task: queue.Task) -> None:
        async with self.db.transaction() as conn:
            ended = await child_runs.check(conn, task)
        if ended is None:
            return  # the child goes on; its end wakes the step
        child = child_runs.child_id(task)
        if ended.status == RunStatus.completed:
            await self._record(task, StepResult(OutcomeKind.completed, output=ended.output))
            return
        reason = (ended.error or {}).get("message", ended.status)
        message = f"child run {child} {ended.status}: {reason}"
        error_class = "child_failed" if ended.status == RunStatus.failed else "child_cancelled"
        await self._record(
            task, failure(error_class, message, retryable=error_class == "child_failed")
        )

    async def _ask_approval(
        self, task: queue.Task, run: RunRecord, arguments: dict[str, Any]
    ) -> None:
        """Record the attempt's approval request (unless an earlier try of it did), then wait
        for the decision: the step's task is due at the timeout (or never), and a decision
        makes it due now."""
        try:
            asked = approvals.parse(arguments)
            check_document("proposal", {"proposal": asked.proposal})
        except (approvals.ApprovalArgumentError, InvalidInput) as exc:
            await self._record(task, failure("bad_arguments", str(exc), retryable=False))
            return
        async with self.db.tenant_transaction(run.tenant_id) as conn:
            expires_at = await approvals.request(
                conn, task, run.workflow_name, asked, datetime.now(UTC), self._actor
            )
        detail = {"approval_id": str(approvals.approval_id(task))}
        answer = await self.recorder.wait(
            task, expires_at, due=expires_at or queue.NEVER, detail=detail
        )
        if answer == "inactive":
            await self._record(task, StepResult(OutcomeKind.cancelled))

    async def _check_approval(self, task: queue.Task) -> None:
        """An approval step's task came due (a decision, its timeout): settle the step from
        the decision, or put the task back until one comes."""
        try:
            async with self.db.tenant_transaction(task.tenant_id) as conn:
                decided = await approvals.check(conn, task, self._actor)
        except LookupError as exc:
            await self._record(task, failure("internal", str(exc), retryable=False))
            return
        if decided is None:
            return  # undecided: a decision, or the timeout, wakes the step
        if decided.approved or decided.on_reject == "continue":
            await self._record(task, StepResult(OutcomeKind.completed, output=decided.output()))
            return
        await self._record(task, failure("approval_rejected", decided.reason(), retryable=False))

    @property
    def _actor(self) -> str:
        return f"worker:{self.recorder.owner}"


def _problem_text(exc: Exception) -> str:
    """An error's message, with the entries of a 422 (what the child's input lacks)."""
    errors = getattr(exc, "errors", None) or []
    details = "; ".join(f"{'.'.join(map(str, e['loc'][2:])) or 'data'}: {e['msg']}" for e in errors)
    return f"{exc}: {details}" if details else str(exc)


def _woken(until: datetime) -> StepResult:
    return StepResult(OutcomeKind.completed, output={"until": until.isoformat()})
