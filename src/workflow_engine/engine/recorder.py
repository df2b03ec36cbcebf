"""Recording what happens to the runs a worker has tasks of: one named transition each.

`RunRecorder` is the one place a worker changes a run: `start` a step, `beat` (renew a lease,
append what the node logged), `settle` an attempt with whatever the scheduling rules decide
follows, `fail` a run, `finish` it with its output, `drop` a task. Each decides from the run as
this worker last knew it and records the decision as one transition (`store.RunStore`).

- **One turn per run.** A worker's transitions of one run take turns (`RunBook`), and each
  leaves the run as it wrote it, so the next decision needs no read.
- **Optimistic concurrency.** Another worker's transition (or a cancel) moves the run's
  version: the transition decided from the older run writes nothing (`conflict`), and the run
  is read and the decision made again. A decision that depends on which steps other workers
  hold — a run failing or stopping — is always made from a fresh read.
- **Exactly-once outcomes.** A transition that finishes a task whose lease was lost writes
  nothing (`lost`): whoever holds the task now records the outcome.
- **Further in one round trip.** The transition that settles a step records the steps it made
  ready that this worker takes as started, when their `if` and arguments are cheap to
  evaluate now, and ends a run whose last step finished when its output is cheap too.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select

from workflow_engine.db import Database
from workflow_engine.db.tables import workflow_runs
from workflow_engine.engine import expressions, queue, scheduler
from workflow_engine.engine.definitions import StepDefinition, WorkflowDefinition
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.run_fold import fold_events
from workflow_engine.engine.run_metrics import count_step
from workflow_engine.engine.runs import Origin, run_context, run_state
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import RUN_ACTIVE, RUN_FINISHED, RunStatus
from workflow_engine.engine.states import Outcome as OutcomeKind
from workflow_engine.engine.step_runner import Beat
from workflow_engine.engine.store import Applied, RunStore, TaskLease, Transition
from workflow_engine.errors import InvalidInput
from workflow_engine.events.storable import check_document
from workflow_engine.observability import metrics

DEFINITIONS_CACHED = 1024  # parsed definitions of recent runs (a run's never changes)
# Times a transition is decided again after other transitions of the run got there first.
MAX_RACES = 50


@dataclass
class RunBook:
    """What the worker knows of one run while it has tasks of it: the run as its last
    transition left it (None: read it again), the steps a worker held at the last read, and
    the turn its transitions take one after another."""

    run: RunRecord | None = None
    held: frozenset[str] = frozenset()
    fresh: bool = False  # `run` and `held` come from a read, not from a transition since
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: int = 0


@dataclass
class Settled:
    """A settled attempt: the tasks handed to this worker, and the arguments of those whose
    start was recorded with it."""

    handed: list[queue.Task]
    started: dict[str, dict[str, Any]]


# What a decision answers instead of a transition: it needs the run as the database has it
# now (who holds which step).
_REREAD = "reread"

Decide = Callable[[RunRecord, frozenset[str], bool], "Transition | str"]


class RunRecorder:
    def __init__(
        self,
        db: Database,
        owner: str,
        lease: timedelta,
        env: Mapping[str, str],
        room: Callable[[], int],
    ) -> None:
        """`room`: how many tasks the worker could start now (what it may hand itself)."""
        self.db = db
        self.owner = owner
        self.lease = lease
        self.env = env
        self.room = room
        self.store = RunStore(db, keep_connection=True)
        self._books: dict[uuid.UUID, RunBook] = {}
        self._definitions: OrderedDict[uuid.UUID, WorkflowDefinition] = OrderedDict()
        self._finished_listeners: list[Callable[[RunRecord], None]] = []

    # --- the runs a worker has tasks of ------------------------------------------------------

    def open(self, task: queue.Task, *, handed: bool) -> None:
        """A task of the run starts in this worker. A task it claimed (not one a transition of
        its own handed it) was made ready by someone else: what this worker knows of the run
        is older than that, so the run is read again before the task decides anything."""
        book = self._books.setdefault(task.run_id, RunBook())
        book.tasks += 1
        if not handed:
            book.run = None

    def close(self, task: queue.Task) -> None:
        """A task of the run has ended in this worker: forget the run after its last."""
        book = self._books[task.run_id]
        book.tasks -= 1
        if book.tasks == 0:
            del self._books[task.run_id]

    def on_run_finished(self, listener: Callable[[RunRecord], None]) -> None:
        self._finished_listeners.append(listener)

    async def idle(self) -> None:
        """The worker runs nothing: give back the connection its transitions share."""
        await self.store.idle()

    async def known(self, task: queue.Task) -> RunRecord | None:
        """The run as this worker last knew it, else as the database has it."""
        book = self._books[task.run_id]
        if book.run is None:
            async with book.turn:
                if book.run is None:
                    await self._read(task.run_id, book)
        return book.run

    def definition(self, run: RunRecord) -> WorkflowDefinition:
        cached = self._definitions.get(run.id)
        if cached is not None:
            return cached
        definition = WorkflowDefinition.model_validate(run.definition)
        self._definitions[run.id] = definition
        if len(self._definitions) > DEFINITIONS_CACHED:
            self._definitions.popitem(last=False)
        return definition

    # --- the transitions ---------------------------------------------------------------------

    async def start(self, task: queue.Task) -> str:
        """Record the attempt as started and renew its lease: "started", "inactive" (the run
        stopped: do not run the node) or "lost" (another worker holds the task now)."""
        data = {"step_id": task.step_id, "attempt": task.attempt, "worker": self.owner}

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            if run.status not in RUN_ACTIVE:
                return "inactive"
            return self._transition(task, run, [(RunEvent.step_started, data)],
                                    renew_task=TaskLease(task.id, self.owner))  # fmt: skip

        answer = await self._record(task, decide)
        if isinstance(answer, str):
            return answer
        if answer.status != "ok":
            return "lost" if answer.status in ("lost", "gone") else "inactive"
        waited = (datetime.now(UTC) - task.available_at).total_seconds()
        metrics.schedule_to_start.observe(max(waited, 0.0))
        return "started"

    async def wait(
        self,
        task: queue.Task,
        until: datetime | None,
        *,
        due: datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> str:
        """Record the step as waiting until `until` (None: for as long as it takes) and give
        its task back to the queue, available at `due` (by default `until`): "waiting",
        "inactive" (the run stopped: settle the step instead) or "lost" (another worker
        holds the task now). `detail`: what else the event says the step waits for."""
        wakes = None if until is None else until.isoformat()
        data = {"step_id": task.step_id, "attempt": task.attempt, "until": wakes, **(detail or {})}
        wake = task.follow_on(task.step_id, attempt=task.attempt, available_at=due or until)

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            if run.status not in RUN_ACTIVE:
                return "inactive"
            return self._transition(task, run, [(RunEvent.step_waiting, data)],
                                    finish_task=TaskLease(task.id, self.owner),
                                    enqueue=[wake])  # fmt: skip

        answer = await self._record(task, decide)
        if isinstance(answer, str):
            return answer
        if answer.status != "ok":
            return "lost" if answer.status in ("lost", "gone") else "inactive"
        return "waiting"

    async def beat(self, task: queue.Task, entries: list[dict[str, Any]]) -> Beat:
        """Renew the lease; append what the node logged; learn whether the run goes on."""
        if not entries:
            async with self.db.transaction() as conn:
                held = await queue.renew(conn, task.id, self.owner, self.lease)
                status = (await conn.execute(_STATUS, {"run_id": task.run_id})).scalar()
            return Beat(held, None if status is None else status in RUN_ACTIVE)
        logged = _logged(task, entries)

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            return self._transition(task, run, [logged], renew_task=TaskLease(task.id, self.owner),
                                    expect_version=False)  # fmt: skip

        answer = await self._record(task, decide)
        assert not isinstance(answer, str)
        if answer.status == "gone":
            return Beat(False, False)
        active = None if answer.run_status is None else answer.run_status in RUN_ACTIVE
        return Beat(answer.status == "ok", active)

    async def journal(
        self, task: queue.Task, entry: dict[str, Any], logs: list[dict[str, Any]]
    ) -> bool:
        """Append one of the step's journal entries (after what the node logged before it),
        renewing the lease; False when the lease was lost or the run is gone."""
        recorded = {"step_id": task.step_id, "attempt": task.attempt, "entry": entry}
        events = [_logged(task, logs)] if logs else []
        events.append((RunEvent.step_recorded, recorded))

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            return self._transition(task, run, events, renew_task=TaskLease(task.id, self.owner),
                                    expect_version=False)  # fmt: skip

        answer = await self._record(task, decide)
        return not isinstance(answer, str) and answer.status == "ok"

    async def settle(
        self, task: queue.Task, result: StepResult, logs: list[dict[str, Any]] | None = None
    ) -> Settled | None:
        """Record how an attempt ended (and what its node logged and was not yet appended),
        with whatever the scheduling rules decide follows; None when nothing was recorded
        (the lease was lost: whoever holds the task now records the outcome)."""
        if result.outcome is OutcomeKind.lost:
            return None
        now, jitter = datetime.now(UTC), random.uniform(-1.0, 1.0)
        logged = [_logged(task, logs)] if logs else []
        decided: list[scheduler.Decision] = []
        started: dict[str, dict[str, Any]] = {}

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            definition = self.definition(run)
            state = run_state(run, held - {task.step_id})
            decision = scheduler.settle(definition, state, task.step_id, task.attempt, result,
                                        now=now, jitter=jitter)  # fmt: skip
            if _needs_holders(decision) and not fresh:
                return _REREAD
            decided[:] = [decision]
            started.clear()
            return self._carry_out(task, run, decision, logged, started)

        answer = await self._record(task, decide)
        if isinstance(answer, str) or answer.status != "ok" or answer.run is None:
            return None
        counted = decided[0].counted
        if counted is not None:
            uses = self.definition(answer.run).step(task.step_id).uses
            duration = None if counted in ("skipped", "cancelled") else result.duration_ms
            count_step(uses, counted, duration)
        return Settled(answer.handed, started)

    async def fail(self, task: queue.Task, error: dict[str, Any]) -> None:
        """Fail the run of a run-level task (`:finish`, `:deadline`) that still holds it."""
        await self._stop(task, lambda definition, state: scheduler.fail(definition, state, error))

    async def cancel(self, task: queue.Task, actor: str) -> None:
        """Cancel the run of a `:cancel` task (its parent ended), as a cancel through the API
        would: steps no worker holds are cancelled now, held ones when their workers report."""
        await self._stop(task, lambda definition, state: scheduler.cancel(definition, state, actor))

    async def _stop(
        self,
        task: queue.Task,
        stopping: Callable[[WorkflowDefinition, scheduler.RunState], scheduler.Decision],
    ) -> None:
        """Record the decision `stopping` makes for an active run (from a fresh read: it
        depends on which steps workers hold) and finish `task`; finish only, if it ended."""

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            if run.status not in RUN_ACTIVE:
                return self._transition(task, run, [], finish_task=TaskLease(task.id, self.owner),
                                        expect_version=False)  # fmt: skip
            if not fresh:
                return _REREAD
            return self._carry_out(task, run, stopping(self.definition(run), run_state(run, held)))

        await self._record(task, decide)

    async def finish(self, task: queue.Task, output: Any) -> None:
        """Complete the run of a `:finish` task with its output (evaluated by the caller)."""

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            going = run.status in RUN_ACTIVE
            events = [(RunEvent.completed, {"output": output})] if going else []
            return self._transition(
                task, run, events, finish_task=TaskLease(task.id, self.owner),
                drop_deadline=going, expect_version=going,
            )  # fmt: skip

        await self._record(task, decide)

    async def drop(self, task: queue.Task) -> None:
        """Delete a task that has nothing left to do (its run is gone or ended)."""
        async with self.db.transaction() as conn:
            await queue.finish(conn, task.id, self.owner)

    # --- deciding and recording ------------------------------------------------------------

    def _carry_out(
        self,
        task: queue.Task,
        run: RunRecord,
        decision: scheduler.Decision,
        logged: list[tuple[RunEvent, dict[str, Any]]] | None = None,
        started: dict[str, dict[str, Any]] | None = None,
    ) -> Transition:
        """The transition that records `decision` and finishes `task`.

        With `started` (filled here), it goes further where it can without leaving the
        transaction: the steps the decision made ready that this worker takes are recorded
        as started when their `if` and arguments are cheap to evaluate now (their arguments
        go into `started`), and a run whose steps have all finished is completed when its
        output is. What cannot be done here is left to tasks, as without `started`."""
        retry = decision.retry
        enqueue = (
            [task.follow_on(retry.step_id, attempt=retry.attempt, available_at=retry.at)]
            if retry is not None
            else []
        )
        events = (logged or []) + decision.events
        ready = [
            task.follow_on(step_id, attempt=scheduler.next_attempt(decision.state, step_id))
            for step_id in decision.ready
        ]
        room = self.room()
        ending = False
        if started is not None and (decision.ready or decision.finished):
            context = run_context(fold_events(run, events), self.env)
            definition = self.definition(run)
            for new in ready[:room]:
                arguments = _prepared(definition.step(new.step_id), context)
                if arguments is not None:
                    data = {"step_id": new.step_id, "attempt": new.attempt, "worker": self.owner}
                    events.append((RunEvent.step_started, data))
                    started[new.step_id] = arguments
            if decision.finished:
                ending = _ended(definition, context, events)
        if decision.finished and not ending:
            ready.append(task.follow_on(queue.FINISH, priority=queue.RUN_LEVEL_PRIORITY))
        return self._transition(
            task, run, events, finish_task=TaskLease(task.id, self.owner),
            enqueue=enqueue + ready[room:], hand_to=ready[:room],
            drop_steps=decision.dropped,
            drop_deadline=ending or decision.state.status in RUN_FINISHED,
        )  # fmt: skip

    def _transition(
        self,
        task: queue.Task,
        run: RunRecord,
        events: list[tuple[RunEvent, dict[str, Any]]],
        **fields: Any,
    ) -> Transition:
        meta = Origin(f"worker:{self.owner}", task.correlation_id, "worker").metadata()
        return Transition(run, events, meta, owner=self.owner, lease=self.lease, **fields)

    async def _record(self, task: queue.Task, decide: Decide) -> Applied | str:
        """Decide from what this worker knows of the run and record the decision; when another
        transition of the run got there first (or the decision needs the holders of steps),
        read the run and decide again."""
        book = self._books[task.run_id]
        async with book.turn:
            for _ in range(MAX_RACES):
                if book.run is None:
                    await self._read(task.run_id, book)
                if book.run is None:
                    return Applied("gone")
                transition = decide(book.run, book.held, book.fresh)
                if transition == _REREAD:
                    book.run = None
                    continue
                if isinstance(transition, str):
                    return transition
                applied = await self.store.record(transition)
                self._remember(book, task, transition, applied)
                if applied.status != "conflict":
                    return applied
            raise RuntimeError(f"run {task.run_id} kept changing under {MAX_RACES} decisions")

    async def _read(self, run_id: uuid.UUID, book: RunBook) -> None:
        found = await self.store.read(run_id)
        book.run, book.held = found if found is not None else (None, frozenset())
        book.fresh = True

    def _remember(
        self, book: RunBook, task: queue.Task, transition: Transition, applied: Applied
    ) -> None:
        if applied.status != "ok" or applied.run is None:
            book.run = None  # read it again next time
            return
        ended = applied.run.status in RUN_FINISHED and transition.run.status not in RUN_FINISHED
        if ended:
            for listener in self._finished_listeners:
                listener(applied.run)
        appended = transition.run.version + len(transition.events)
        if not transition.expect_version and applied.run.version != appended:
            book.run = None  # others appended meanwhile: what they changed is not folded here
            return
        book.run = applied.run
        book.fresh = False
        finished = {task.step_id} if transition.finish_task is not None else set()
        book.held = (book.held - finished) | {handed.step_id for handed in applied.handed}


_STATUS = select(workflow_runs.c.status).where(workflow_runs.c.id == bindparam("run_id"))


def _needs_holders(decision: scheduler.Decision) -> bool:
    """Whether the decision depends on which steps a worker holds (a run stopping)."""
    return decision.state.status in (RunStatus.failed, RunStatus.cancelling, RunStatus.cancelled)


def _prepared(step: StepDefinition, context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step's arguments, when it will run and both its `if` and its arguments are cheap
    to evaluate here (no thread, no deadline needed); None: leave the step to its task."""
    if expressions.may_be_costly(step.with_) or (
        step.if_ is not None and expressions.may_be_costly(step.if_)
    ):
        return None
    try:
        if step.if_ is not None and not expressions.evaluate_condition(step.if_, context):
            return None  # its task records the skip, with its reason
        arguments: dict[str, Any] = expressions.evaluate(step.with_, context)
    except expressions.ExpressionError:
        return None  # its task records the failure
    return arguments


def _ended(
    definition: WorkflowDefinition,
    context: Mapping[str, Any],
    events: list[tuple[RunEvent, dict[str, Any]]],
) -> bool:
    """Append the run's end when its output is cheap to evaluate here; whether it was."""
    if expressions.may_be_costly(definition.output):
        return False
    try:
        output = expressions.evaluate(definition.output, context)
        check_document("output", {"output": output})
    except (expressions.ExpressionError, InvalidInput) as exc:
        error_class = (
            "expression" if isinstance(exc, expressions.ExpressionError) else "invalid_output"
        )
        error = {"class": error_class, "message": f"output: {exc}", "retryable": False}
        events.append((RunEvent.failed, {"error": error}))
        return True
    events.append((RunEvent.completed, {"output": output}))
    return True


def _logged(task: queue.Task, entries: list[dict[str, Any]]) -> tuple[RunEvent, dict[str, Any]]:
    return RunEvent.step_logged, {"step_id": task.step_id, "attempt": task.attempt,
                                  "entries": entries}  # fmt: skip
