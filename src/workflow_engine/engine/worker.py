"""The worker: claims tasks, runs steps, and records what the scheduling rules decide.

For each claimed step task:

1. Know the run: the snapshot the worker keeps of it (the state its last transition of the
   run left), or one read. Skip the step if its `if` is false; evaluate its arguments (in a
   thread when they may be costly, under the expression deadline).
2. Record `StepStarted` and renew the lease: one transition (`store.RunStore`), which writes
   nothing if the run stopped or the lease was lost.
3. Run the node (`step_runner`), holding no database session, under the step's timeout,
   while a heartbeat renews the lease, appends what the node logged, and interrupts the node
   when the lease is lost or the run stopped.
4. Record the outcome: `scheduler.settle` decides from the snapshot, and one transition records
   the decision — the outcome, a retry, the steps made ready or skipped, the run failed, its
   output due — guarded by the run's version. If another transition of the run got there
   first, the worker reads the run and decides again. Steps made ready are leased to this
   worker in that transition as far as it has room, and start when it returns with the run
   as the decision left it (no claim, no wake-up, no read); the rest wait for any worker.

This worker's transitions of one run take turns (`_RunBook`), so its own steps never race
each other; other workers' transitions are what the version guard is for. Steps are
at-least-once (a worker that dies mid-step leaves a lease that expires, and another worker
runs the step again); their recorded outcome is exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, select

from workflow_engine.db import Database
from workflow_engine.db.listener import listen
from workflow_engine.db.tables import workflow_runs
from workflow_engine.engine import expressions, queue, scheduler
from workflow_engine.engine.definitions import StepDefinition, WorkflowDefinition
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.run_fold import fold_events
from workflow_engine.engine.run_logs import RunLogBuffer
from workflow_engine.engine.runs import RUN_CANCELLED, Origin, run_context, run_state
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import RUN_ACTIVE, RUN_FINISHED, RunStatus
from workflow_engine.engine.states import Outcome as OutcomeKind
from workflow_engine.engine.step_runner import Beat, StepRunner, failure
from workflow_engine.engine.store import Applied, RunStore, TaskLease, Transition
from workflow_engine.events.signal import Signal
from workflow_engine.integrations.mcp import MCPClients
from workflow_engine.nodes.registry import NodeContext, NodeRegistry, NodeSettings
from workflow_engine.observability import metrics, tracing

logger = structlog.get_logger(__name__)

DEFINITIONS_CACHED = 1024  # parsed definitions of recent runs (a run's never changes)
# Times a transition is decided again after other transitions of the run got there first.
MAX_RACES = 50


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 16
    lease: timedelta = timedelta(seconds=30)
    heartbeat: float = 0.5  # seconds between lease renewals and cancel checks
    poll: float = 1.0  # the safety net when no wake-up comes
    expression_timeout: float = expressions.DEFAULT_TIMEOUT
    node_settings: NodeSettings = field(default_factory=NodeSettings)
    env: Mapping[str, str] = field(default_factory=dict)  # what expressions see as `env`


@dataclass
class _RunBook:
    """What this worker knows of one run while it has tasks of it: the run as its last
    transition left it (None: read it again), the steps a worker held at the last read, and
    the turn its transitions take one after another."""

    run: RunRecord | None = None
    held: frozenset[str] = frozenset()
    fresh: bool = False  # `run` and `held` come from a read, not from a transition since
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: int = 0


# What a decision answers instead of a transition.
_REREAD = "reread"  # it needs the run as the database has it now (who holds which step)

Decide = Callable[[RunRecord, frozenset[str], bool], "Transition | str"]


class Worker:
    def __init__(
        self,
        db: Database,
        nodes: NodeRegistry,
        options: WorkerOptions | None = None,
        *,
        mcp: MCPClients | None = None,
    ) -> None:
        """`mcp`: the MCP sessions nodes use, which the worker closes when it stops (none
        configured when not given)."""
        self.db = db
        self.nodes = nodes
        self.options = options or WorkerOptions()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.store = RunStore(db, keep_connection=True)
        self._wake = Signal()
        self._cancel_check = Signal()
        self._runner = StepRunner(nodes, self.options.heartbeat, self._cancel_check)
        self._active: dict[uuid.UUID, asyncio.Task[None]] = {}
        # The last claim filled every free slot: a slot that frees up may find more work.
        self._saturated = False
        self._books: dict[uuid.UUID, _RunBook] = {}
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._definitions: OrderedDict[uuid.UUID, WorkflowDefinition] = OrderedDict()
        self._finished_listeners: list[Callable[[RunRecord], None]] = []
        self.mcp = mcp if mcp is not None else MCPClients(())

    async def start(self) -> None:
        self.db.on_commit(queue.TASKS_READY, self._wake.fire)
        self.db.on_commit(RUN_CANCELLED, self._cancel_check.fire)
        self._loop_task = asyncio.create_task(self._claim_loop(), name="worker-claims")
        if not self.db.is_sqlite:  # tasks enqueued by other processes wake us at their commit
            self._listener = asyncio.create_task(
                listen(self.db, queue.NOTIFY_CHANNEL, self._wake.fire), name="worker-listener"
            )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running steps finish within `grace`, then interrupt the rest and
        give their tasks back so another worker takes them at once."""
        self._stopping.set()
        self._wake.fire()
        if self._loop_task is not None:
            await self._loop_task
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=grace)
        for running in list(self._active.values()):
            running.cancel()
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=5)
        self.db.remove_commit_listener(queue.TASKS_READY, self._wake.fire)
        self.db.remove_commit_listener(RUN_CANCELLED, self._cancel_check.fire)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.mcp.close()

    @property
    def running(self) -> int:
        return len(self._active)

    def on_run_finished(self, listener: Callable[[RunRecord], None]) -> None:
        """Call `listener` with each run this worker ends (completed, failed or cancelled), once
        the transition that ended it has committed: an in-process signal for an application
        embedding the engine (other processes learn of a run's end from the event log)."""
        self._finished_listeners.append(listener)

    def wake(self) -> None:
        """Tasks may be ready (another process's NOTIFY)."""
        self._wake.fire()

    # --- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            seen = self._wake.generation
            free = self.options.concurrency - len(self._active)
            claimed: list[queue.Task] = []
            wait = self.options.poll
            if free > 0:
                try:
                    async with self.db.transaction() as conn:
                        claimed = await queue.claim(conn, self.owner, free, self.options.lease)
                        upcoming = await queue.next_available(conn)
                    if upcoming is not None:
                        until = (upcoming - datetime.now(UTC)).total_seconds()
                        wait = max(0.0, min(wait, until))
                except Exception as exc:  # the database is away: health says so; retry
                    logger.warning("claiming tasks failed", error=type(exc).__name__)
            self._saturated = free <= 0 or len(claimed) == free
            for task in claimed:
                self._spawn(task)
            if claimed and len(claimed) == free:
                continue  # perhaps more are ready
            if not claimed:
                await self._wake.wait(seen, wait)
            else:
                await self._wake.wait(self._wake.generation, wait)

    def _spawn(self, task: queue.Task, started: dict[str, Any] | None = None) -> None:
        """Run `task`; `started`: its arguments, when its start was recorded already."""
        book = self._books.setdefault(task.run_id, _RunBook())
        book.tasks += 1
        self._active[task.id] = asyncio.create_task(
            self._run_task(task, started), name=f"task-{task.step_id}"
        )

    def _room(self) -> int:
        """Tasks the worker could start now, counting the slot of the caller (a running task
        about to end) as free."""
        if self._stopping.is_set():
            return 0
        return max(0, self.options.concurrency - len(self._active) + 1)

    async def _run_task(self, task: queue.Task, started: dict[str, Any] | None) -> None:
        log = logger.bind(run_id=str(task.run_id), step=task.step_id, attempt=task.attempt,
                          correlation_id=task.correlation_id)  # fmt: skip
        attributes = {"workflow.run_id": str(task.run_id), "workflow.step_id": task.step_id,
                      "workflow.attempt": task.attempt}  # fmt: skip
        try:
            with tracing.span(f"step {task.step_id}", parent=task.trace_context, kind="consumer",
                              attributes=attributes):  # fmt: skip
                await self._handle(task, log, started)
        finally:
            self._active.pop(task.id, None)
            book = self._books[task.run_id]
            book.tasks -= 1
            if book.tasks == 0:
                del self._books[task.run_id]
            if self._saturated:
                self._wake.fire()
            if not self._active:
                await self.store.idle()

    async def _handle(self, task: queue.Task, log: Any, started: dict[str, Any] | None) -> None:
        try:
            if task.claims > queue.MAX_CLAIMS:
                await self._give_up(task)
            elif task.step_id == queue.FINISH:
                await self._finish_run(task)
            elif task.step_id == queue.DEADLINE:
                await self._deadline(task)
            else:
                await self._run_step(task, log, started)
        except asyncio.CancelledError:
            await self._release(task)
        except Exception:
            # The lease will expire and another claim retries the task.
            log.exception("task failed unexpectedly; it will be retried when its lease expires")

    async def _release(self, task: queue.Task) -> None:
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await queue.release(conn, task.id, self.owner)

    # --- a step ----------------------------------------------------------------------------

    async def _run_step(
        self, task: queue.Task, log: Any, started_with: dict[str, Any] | None
    ) -> None:
        run = await self._known(task)
        if run is None:
            await self._drop(task)
            return
        step = self._definition(run).step(task.step_id)
        if started_with is not None:
            await self._run_node(task, run, step, started_with, log)
            return
        if run.status not in RUN_ACTIVE:
            await self._record(task, StepResult(OutcomeKind.cancelled))
            return
        skip_reason = scheduler.skip_reason(step, run_state(run))
        context = run_context(run, self.options.env)
        arguments: dict[str, Any] = {}
        if skip_reason is None:
            try:
                if step.if_ is not None and not await self._condition(step.if_, context):
                    skip_reason = f"`if` is false: {step.if_}"
                else:
                    arguments = await self._evaluate(step.with_, context)
            except expressions.ExpressionError as exc:
                await self._record(task, failure("expression", str(exc), retryable=False))
                return
        if skip_reason is not None:
            await self._record(task, StepResult(OutcomeKind.skipped, error={"reason": skip_reason}))
            return
        started = await self._start(task)
        if started == "lost":
            return
        if started == "inactive":  # cancelled or failed meanwhile: the node never runs
            await self._record(task, StepResult(OutcomeKind.cancelled))
            return
        await self._run_node(task, run, step, arguments, log)

    async def _run_node(
        self,
        task: queue.Task,
        run: RunRecord,
        step: StepDefinition,
        arguments: dict[str, Any],
        log: Any,
    ) -> None:
        buffer = RunLogBuffer(log)
        node_context = NodeContext(
            run_id=run.id, tenant_id=run.tenant_id, workflow_name=run.workflow_name,
            step_id=step.id, attempt=task.attempt, log=buffer,
            settings=self.options.node_settings, mcp=self.mcp,
        )  # fmt: skip
        result = await self._runner.run(
            step, node_context, arguments, buffer, lambda entries: self._beat(task, entries)
        )
        failed = result.outcome is OutcomeKind.failed
        error = (result.error or {}).get("message") if failed else None
        tracing.annotate({"workflow.name": run.workflow_name, "workflow.node": step.uses,
                          "workflow.outcome": str(result.outcome)}, error=error)  # fmt: skip
        await self._record(task, result, buffer.drain())

    async def _known(self, task: queue.Task) -> RunRecord | None:
        """The run as this worker last knew it, else as the database has it."""
        book = self._books[task.run_id]
        if book.run is None:
            async with book.turn:
                if book.run is None:
                    await self._read(task.run_id, book)
        return book.run

    async def _read(self, run_id: uuid.UUID, book: _RunBook) -> None:
        found = await self.store.read(run_id)
        book.run, book.held = found if found is not None else (None, frozenset())
        book.fresh = True

    def _definition(self, run: RunRecord) -> WorkflowDefinition:
        cached = self._definitions.get(run.id)
        if cached is not None:
            return cached
        definition = WorkflowDefinition.model_validate(run.definition)
        self._definitions[run.id] = definition
        if len(self._definitions) > DEFINITIONS_CACHED:
            self._definitions.popitem(last=False)
        return definition

    async def _evaluate(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Expressions that may be costly (loops, filters) run in a thread, templates with
        statements under the deadline too; plain lookups run here, saving the thread hop."""
        if not expressions.may_be_costly(value):
            return expressions.evaluate(value, context)
        return await asyncio.to_thread(
            expressions.evaluate, value, context, timeout=self.options.expression_timeout
        )

    async def _condition(self, condition: str, context: Mapping[str, Any]) -> bool:
        if not expressions.may_be_costly(condition):
            return expressions.evaluate_condition(condition, context)
        return await asyncio.to_thread(expressions.evaluate_condition, condition, context)

    async def _start(self, task: queue.Task) -> str:
        """ "started", "inactive" (the run stopped: do not run the node) or "lost" (another
        worker holds the task now: do nothing)."""
        data = {"step_id": task.step_id, "attempt": task.attempt, "worker": self.owner}

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            if run.status not in RUN_ACTIVE:
                return "inactive"
            return self._transition(task, run, [(RunEvent.step_started, data)],
                                    renew_task=TaskLease(task.id, self.owner))  # fmt: skip

        answer = await self._decide_and_record(task, decide)
        if isinstance(answer, str):
            return answer
        if answer.status != "ok":
            return "lost" if answer.status in ("lost", "gone") else "inactive"
        waited = (datetime.now(UTC) - task.available_at).total_seconds()
        metrics.schedule_to_start.observe(max(waited, 0.0))
        return "started"

    async def _beat(self, task: queue.Task, entries: list[dict[str, Any]]) -> Beat:
        """Renew the lease; append what the node logged; learn whether the run goes on."""
        if not entries:
            async with self.db.transaction() as conn:
                held = await queue.renew(conn, task.id, self.owner, self.options.lease)
                status = (await conn.execute(_STATUS, {"run_id": task.run_id})).scalar()
            return Beat(held, None if status is None else status in RUN_ACTIVE)
        logged = _logged(task, entries)

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            return self._transition(task, run, [logged], renew_task=TaskLease(task.id, self.owner),
                                    expect_version=False)  # fmt: skip

        answer = await self._decide_and_record(task, decide)
        assert not isinstance(answer, str)
        if answer.status == "gone":
            return Beat(False, False)
        active = None if answer.run_status is None else answer.run_status in RUN_ACTIVE
        return Beat(answer.status == "ok", active)

    # --- outcomes ------------------------------------------------------------------------

    async def _record(
        self, task: queue.Task, result: StepResult, logs: list[dict[str, Any]] | None = None
    ) -> None:
        """Record how an attempt ended (and what its node logged and was not yet appended),
        with whatever the scheduling rules decide follows."""
        if result.outcome is OutcomeKind.lost:
            return
        now, jitter = datetime.now(UTC), random.uniform(-1.0, 1.0)
        logged = [_logged(task, logs)] if logs else []
        decided: list[scheduler.Decision] = []
        started: dict[str, dict[str, Any]] = {}

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            definition = self._definition(run)
            state = run_state(run, held - {task.step_id})
            decision = scheduler.settle(definition, state, task.step_id, task.attempt, result,
                                        now=now, jitter=jitter)  # fmt: skip
            if _needs_holders(decision) and not fresh:
                return _REREAD
            decided[:] = [decision]
            started.clear()
            return self._carry_out(task, run, decision, logged, started)

        answer = await self._decide_and_record(task, decide)
        if isinstance(answer, str) or answer.status != "ok":
            return  # lost the lease: whoever holds the task now records the outcome
        counted = decided[0].counted
        if counted is not None and answer.run is not None:
            uses = self._definition(answer.run).step(task.step_id).uses
            duration = None if counted in ("skipped", "cancelled") else result.duration_ms
            _count_step(uses, counted, duration)
        await self._take(answer, started)

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
        ready = [task.follow_on(step_id) for step_id in decision.ready]
        room = self._room()
        ending = False
        if started is not None and (decision.ready or decision.finished):
            after = fold_events(run, events)
            context = run_context(after, self.options.env)
            definition = self._definition(run)
            for new in ready[:room]:
                arguments = _prepared(definition.step(new.step_id), context)
                if arguments is not None:
                    data = {"step_id": new.step_id, "attempt": 1, "worker": self.owner}
                    events.append((RunEvent.step_started, data))
                    started[new.step_id] = arguments
            if decision.finished:
                ending = _ended(definition, context, events)
        if decision.finished and not ending:
            ready.append(task.follow_on(queue.FINISH, priority=1))
        return self._transition(
            task, run, events, finish_task=TaskLease(task.id, self.owner),
            enqueue=enqueue + ready[room:], hand_to=ready[:room],
            drop_waiting=decision.drop_waiting, drop_deadline=ending,
        )  # fmt: skip

    async def _take(self, applied: Applied, started: dict[str, dict[str, Any]]) -> None:
        """Start the tasks this worker handed itself (those recorded as started, with their
        arguments); give back any it has no room for now (another task was claimed
        meanwhile): the lease of one recorded as started expires, and its step runs again."""
        room = self._room()
        for task in applied.handed[:room]:
            arguments = started.get(task.step_id)
            if arguments is not None:
                metrics.schedule_to_start.observe(0.0)
            self._spawn(task, arguments)
        if applied.handed[room:]:
            async with self.db.transaction() as conn:
                for task in applied.handed[room:]:
                    await queue.release(conn, task.id, self.owner)

    async def _give_up(self, task: queue.Task) -> None:
        """The task's handling failed unexpectedly `MAX_CLAIMS` times (logged each time): fail
        the step, or for a run-level task the run, rather than retry forever."""
        message = f"the engine failed to handle this task {queue.MAX_CLAIMS} times; see the logs"
        if task.step_id not in (queue.FINISH, queue.DEADLINE):
            await self._record(task, failure("internal", message, False))
            return
        await self._fail_run(task, {"class": "internal", "message": message, "retryable": False})

    async def _fail_run(self, task: queue.Task, error: dict[str, Any]) -> None:
        """Fail the run of a run-level task (`:finish`, `:deadline`) that still holds it."""

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            if run.status not in RUN_ACTIVE:
                return self._transition(task, run, [], finish_task=TaskLease(task.id, self.owner),
                                        expect_version=False)  # fmt: skip
            if not fresh:
                return _REREAD
            decision = scheduler.fail(self._definition(run), run_state(run, held), error)
            return self._carry_out(task, run, decision)

        await self._decide_and_record(task, decide)

    async def _finish_run(self, task: queue.Task) -> None:
        run = await self._known(task)
        if run is None or run.status not in RUN_ACTIVE:
            await self._drop(task)
            return
        definition = self._definition(run)
        try:
            output = await self._evaluate(definition.output, run_context(run, self.options.env))
        except expressions.ExpressionError as exc:
            message = f"output: {exc}"
            await self._fail_run(task, {"class": "expression", "message": message,
                                        "retryable": False})  # fmt: skip
            return

        def decide(run: RunRecord, held: frozenset[str], fresh: bool) -> Transition | str:
            going = run.status in RUN_ACTIVE
            events = [(RunEvent.completed, {"output": output})] if going else []
            return self._transition(
                task, run, events, finish_task=TaskLease(task.id, self.owner),
                drop_deadline=going, expect_version=going,
            )  # fmt: skip

        await self._decide_and_record(task, decide)

    async def _deadline(self, task: queue.Task) -> None:
        run = await self._known(task)
        timeout = self._definition(run).timeout if run is not None else None
        message = f"the run took longer than {timeout or 0:g} s"
        await self._fail_run(task, {"class": "timeout", "message": message, "retryable": False})

    async def _drop(self, task: queue.Task) -> None:
        async with self.db.transaction() as conn:
            await queue.finish(conn, task.id, self.owner)

    # --- transitions -----------------------------------------------------------------------

    def _transition(
        self,
        task: queue.Task,
        run: RunRecord,
        events: list[tuple[RunEvent, dict[str, Any]]],
        **fields: Any,
    ) -> Transition:
        return Transition(run, events, self._meta(task), owner=self.owner,
                          lease=self.options.lease, **fields)  # fmt: skip

    async def _decide_and_record(self, task: queue.Task, decide: Decide) -> Applied | str:
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
                ended = applied.run
                if (
                    ended is not None
                    and ended.status in RUN_FINISHED
                    and transition.run.status not in RUN_FINISHED
                ):
                    for listener in self._finished_listeners:
                        listener(ended)
                if applied.status != "conflict":
                    return applied
            raise RuntimeError(f"run {task.run_id} kept changing under {MAX_RACES} decisions")

    @staticmethod
    def _remember(
        book: _RunBook, task: queue.Task, transition: Transition, applied: Applied
    ) -> None:
        if applied.status != "ok" or applied.run is None:
            book.run = None  # read it again next time
            return
        appended = transition.run.version + len(transition.events)
        if not transition.expect_version and applied.run.version != appended:
            book.run = None  # others appended meanwhile: what they changed is not folded here
            return
        book.run = applied.run
        book.fresh = False
        finished = {task.step_id} if transition.finish_task is not None else set()
        book.held = (book.held - finished) | {handed.step_id for handed in applied.handed}

    def _meta(self, task: queue.Task) -> dict[str, Any]:
        return Origin(f"worker:{self.owner}", task.correlation_id, "worker").metadata()


_STATUS = select(workflow_runs.c.status).where(workflow_runs.c.id == bindparam("run_id"))


def _needs_holders(decision: scheduler.Decision) -> bool:
    """Whether the decision depends on which steps a worker holds (a run stopping)."""
    return decision.drop_waiting or decision.state.status in (
        RunStatus.cancelling,
        RunStatus.cancelled,
    )


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
    except expressions.ExpressionError as exc:
        error = {"class": "expression", "message": f"output: {exc}", "retryable": False}
        events.append((RunEvent.failed, {"error": error}))
        return True
    events.append((RunEvent.completed, {"output": output}))
    return True


def _count_step(uses: str, outcome: str, duration_ms: float | None) -> None:
    """A step attempt ended with `outcome` (completed, failed, retried, skipped, cancelled)."""
    metrics.steps.labels(uses, outcome).inc()
    if duration_ms is not None:
        metrics.step_duration.labels(uses, outcome).observe(duration_ms / 1000)


def _logged(task: queue.Task, entries: list[dict[str, Any]]) -> tuple[RunEvent, dict[str, Any]]:
    return RunEvent.step_logged, {"step_id": task.step_id, "attempt": task.attempt,
                                  "entries": entries}  # fmt: skip
