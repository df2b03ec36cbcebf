"""The worker: claims tasks and runs them; `recorder.RunRecorder` records what follows.

For each claimed step task:

1. Know the run: as this worker's last transition of it left it, or read once. Skip the step
   if its `if` is false; evaluate its arguments (in a thread when they may be costly, under
   the expression deadline).
2. Record `StepStarted` and renew the lease: one transition, which writes nothing if the run
   stopped or the lease was lost. (A step handed on by the transition that made it ready was
   recorded as started there, when its `if` and arguments were cheap: it skips 1 and 2.)
3. Run the node (`step_runner`), holding no database session, under the step's timeout,
   while a heartbeat renews the lease, appends what the node logged, and interrupts the node
   when the lease is lost or the run stopped. (A step the engine carries out itself —
   `sleep`, `wait.event`, `workflow` — waits instead, holding no slot: `wait_steps`.)
4. Record the outcome: `scheduler.settle` decides and one transition records the decision —
   the outcome, a retry, the steps made ready or skipped, the run failed or completed. Steps
   made ready are leased to this worker as far as it has room and start when the transition
   returns (no claim, no wake-up, no read); the rest wait in the queue for any worker.

Steps are at-least-once (a worker that dies mid-step leaves a lease that expires, and another
worker runs the step again); their recorded outcome is exactly-once (see `recorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog

from workflow_engine.db import Database
from workflow_engine.db.availability import availability, unreachable
from workflow_engine.db.listener import listen
from workflow_engine.engine import (
    admission,
    expressions,
    queue,
    scheduler,
    waits,
)
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import StepDefinition
from workflow_engine.engine.deltas import hub_for
from workflow_engine.engine.recorder import RunRecorder
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_logs import RunLogBuffer
from workflow_engine.engine.runs import (
    RUN_CANCELLED,
    run_context,
    run_state,
)
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import RUN_ACTIVE, StepStatus
from workflow_engine.engine.states import Outcome as OutcomeKind
from workflow_engine.engine.step_journal import WorkerJournal
from workflow_engine.engine.step_runner import StepRunner, failure
from workflow_engine.engine.wait_steps import WaitSteps
from workflow_engine.errors import InvalidInput
from workflow_engine.events.signal import Signal
from workflow_engine.events.storable import check_document
from workflow_engine.integrations.mcp import MCPClients
from workflow_engine.nodes.registry import NodeContext, NodeRegistry, NodeSettings
from workflow_engine.observability import metrics, tracing
from workflow_engine.usage.budgets import Budgets
from workflow_engine.usage.database_meter import DatabaseMeter
from workflow_engine.usage.meter import UsageMeter

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 16
    lease: timedelta = timedelta(seconds=30)
    heartbeat: float = 0.5  # seconds between lease renewals and cancel checks
    poll: float = 1.0  # the safety net when no wake-up comes
    expression_timeout: float = expressions.DEFAULT_TIMEOUT
    node_settings: NodeSettings = field(default_factory=NodeSettings)
    env: Mapping[str, str] = field(default_factory=dict)  # what expressions see as `env`
    # Claims of one task without an outcome (its workers died, or its handling kept failing)
    # before its step fails as `internal`: a poison pill must not loop forever.
    max_claims: int = queue.MAX_CLAIMS
    max_running_per_tenant: int | None = None  # MAX_RUNNING_PER_TENANT (engine/admission.py)
    tenant_weights: Mapping[str, int] = field(default_factory=dict)  # TENANT_WEIGHTS, by name


class Worker:
    def __init__(
        self,
        db: Database,
        nodes: NodeRegistry,
        options: WorkerOptions | None = None,
        *,
        mcp: MCPClients | None = None,
        catalog: DefinitionCatalog | None = None,
        usage: UsageMeter | None = None,
    ) -> None:
        """`mcp`: the MCP sessions nodes use, which the worker closes when it stops (none
        configured when not given); `catalog`: the workflows `workflow` steps start; `usage`:
        what records the nodes' LLM calls and checks the tenants' budgets (when not given,
        calls are recorded in this database and no budget applies)."""
        self.db = db
        self.nodes = nodes
        self.options = options or WorkerOptions()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.mcp = mcp if mcp is not None else MCPClients(())
        self.catalog = catalog
        self.usage = usage if usage is not None else DatabaseMeter(db, Budgets())
        self.recorder = RunRecorder(
            db, self.owner, self.options.lease, self.options.env, self._room
        )
        self._wake = Signal()
        self._cancel_check = Signal()
        self._runner = StepRunner(nodes, self.options.heartbeat, self._cancel_check)
        self._waits = WaitSteps(db, self.recorder, catalog, self.options.env,
                                record=self._record, evaluate=self._evaluate)  # fmt: skip
        self._active: dict[uuid.UUID, asyncio.Task[None]] = {}
        # The last claim filled every free slot: a slot that frees up may find more work.
        self._saturated = False
        self._stopping = asyncio.Event()
        self._weighed = False  # TENANT_WEIGHTS applied (by the first claim)
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

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
        self.recorder.on_run_finished(listener)

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
                        if not self._weighed:  # here, where a missing schema is retried
                            await queue.weigh_tenants(conn, self.options.tenant_weights)
                        claimed = await queue.claim(conn, self.owner, free, self.options.lease)
                        upcoming = await queue.next_available(conn)
                    self._weighed = True
                    if upcoming is not None:
                        until = (upcoming - datetime.now(UTC)).total_seconds()
                        wait = max(0.0, min(wait, until))
                except Exception as exc:  # the database is away: health says so; retry
                    if unreachable(exc):
                        availability.failed(exc, "worker claims")  # logged once an outage
                    else:
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

    def _spawn(
        self, task: queue.Task, *, handed: bool = False, started: dict[str, Any] | None = None
    ) -> None:
        """Run `task`: claimed, or `handed` to this worker by its own transition; `started`:
        its arguments, when its start was recorded already."""
        self.recorder.open(task, handed=handed)
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
            self.recorder.close(task)
            if self._saturated:
                self._wake.fire()
            if not self._active:
                await self.recorder.idle()

    async def _handle(self, task: queue.Task, log: Any, started: dict[str, Any] | None) -> None:
        try:
            if task.claims > self.options.max_claims:
                await self._give_up(task)
            elif task.step_id == queue.FINISH:
                await self._finish_run(task)
            elif task.step_id == queue.DEADLINE:
                await self._deadline(task)
            elif task.step_id == queue.CANCEL:
                await self._cancel_child(task)
            elif task.step_id == queue.ADMIT:
                await self._admit(task)
            else:
                await self._run_step(task, log, started)
        except asyncio.CancelledError:
            await self._release(task)
        except Exception as exc:
            # The lease will expire and another claim retries the task.
            if unreachable(exc):  # an outage, logged once, not one traceback per step
                availability.failed(exc, "worker steps")
                return
            log.exception("task failed unexpectedly; it will be retried when its lease expires")

    async def _release(self, task: queue.Task) -> None:
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await queue.release(conn, task.id, self.owner)

    # --- a step ----------------------------------------------------------------------------

    async def _run_step(
        self, task: queue.Task, log: Any, started_with: dict[str, Any] | None
    ) -> None:
        run = await self.recorder.known(task)
        if run is None:
            await self.recorder.drop(task)
            return
        step = self.recorder.definition(run).step(task.step_id)
        if run.step(task.step_id).status == StepStatus.waiting:
            await self._waits.come_due(task, run, step)
            return
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
        started = await self.recorder.start(task)
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
        if waits.is_wait(step.uses):
            await self._waits.begin(task, run, step, arguments)
            return
        buffer = RunLogBuffer(log)
        deltas = hub_for(self.db).publisher(run.tenant_id, run.id, step.id, task.attempt)
        node_context = NodeContext(
            run_id=run.id, tenant_id=run.tenant_id, workflow_name=run.workflow_name,
            step_id=step.id, attempt=task.attempt, log=buffer,
            settings=self.options.node_settings, mcp=self.mcp, usage=self.usage,
            journal=WorkerJournal(self.db, self.recorder, task, buffer), deltas=deltas,
        )  # fmt: skip
        try:
            beat = partial(self.recorder.beat, task)
            result = await self._runner.run(step, node_context, arguments, buffer, beat)
        finally:
            await deltas.close()  # the last delta goes out before the step's outcome is recorded
        failed = result.outcome is OutcomeKind.failed
        error = (result.error or {}).get("message") if failed else None
        tracing.annotate({"workflow.name": run.workflow_name, "workflow.node": step.uses,
                          "workflow.outcome": str(result.outcome)}, error=error)  # fmt: skip
        await self._record(task, result, buffer.drain())

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

    # --- outcomes ------------------------------------------------------------------------

    async def _record(
        self, task: queue.Task, result: StepResult, logs: list[dict[str, Any]] | None = None
    ) -> None:
        settled = await self.recorder.settle(task, result, logs)
        if settled is not None:
            await self._take(settled.handed, settled.started)

    async def _take(self, handed: list[queue.Task], started: dict[str, dict[str, Any]]) -> None:
        """Start the tasks this worker handed itself (those recorded as started, with their
        arguments); give back any it has no room for now (another task was claimed
        meanwhile): the lease of one recorded as started expires, and its step runs again."""
        room = self._room()
        for task in handed[:room]:
            arguments = started.get(task.step_id)
            if arguments is not None:
                metrics.schedule_to_start.observe(0.0)
            self._spawn(task, handed=True, started=arguments)
        if handed[room:]:
            async with self.db.transaction() as conn:
                for task in handed[room:]:
                    await queue.release(conn, task.id, self.owner)

    async def _give_up(self, task: queue.Task) -> None:
        """The task was claimed `max_claims` times without an outcome — its workers died while
        holding it, or its handling failed unexpectedly (logged each time): fail the step, or
        for a run-level task the run, rather than retry forever."""
        message = (
            f"the task was claimed {self.options.max_claims} times without an outcome: the "
            "workers holding it stopped, or handling it failed (see the logs)"
        )
        if task.step_id not in queue.RUN_LEVEL_TASKS:
            await self._record(task, failure("internal", message, False))
            return
        await self.recorder.fail(
            task, {"class": "internal", "message": message, "retryable": False}
        )

    async def _finish_run(self, task: queue.Task) -> None:
        run = await self.recorder.known(task)
        if run is None or run.status not in RUN_ACTIVE:
            await self.recorder.drop(task)
            return
        definition = self.recorder.definition(run)
        try:
            output = await self._evaluate(definition.output, run_context(run, self.options.env))
            check_document("output", {"output": output})
        except (expressions.ExpressionError, InvalidInput) as exc:
            error_class = (
                "expression" if isinstance(exc, expressions.ExpressionError) else "invalid_output"
            )
            error = {"class": error_class, "message": f"output: {exc}", "retryable": False}
            await self.recorder.fail(task, error)
            return
        await self.recorder.finish(task, output)

    async def _admit(self, task: queue.Task) -> None:
        """Admit the task's run, and whatever else of its tenant fits, once its limits let it
        (`admission`); until then its task is parked."""
        run = await self.recorder.known(task)
        if run is None or run.status not in RUN_ACTIVE:
            await self.recorder.drop(task)
            return
        definition = self.recorder.definition(run)
        key, limit = "", None
        if definition.concurrency is not None:
            limit = definition.concurrency.limit
            if definition.concurrency.key is not None:
                try:
                    value = await self._evaluate(definition.concurrency.key,
                                                 run_context(run, self.options.env))  # fmt: skip
                except expressions.ExpressionError as exc:
                    error = {"class": "expression", "message": f"concurrency key: {exc}",
                             "retryable": False}  # fmt: skip
                    await self.recorder.fail(task, error)
                    return
                key = str(value)[: admission.MAX_KEY]
        child = run.parent_run_id is not None
        waiting = admission.Waiting(
            run.id, run.tenant_id, run.workflow_name, key, limit,
            counts_toward_cap=not child, priority=task.priority, created_at=run.created_at,
        )  # fmt: skip
        async with self.db.transaction() as conn:
            await admission.admit(conn, task, waiting, self.options.max_running_per_tenant)

    async def _cancel_child(self, task: queue.Task) -> None:
        run = await self.recorder.known(task)
        if run is None:
            await self.recorder.drop(task)
            return
        await self.recorder.cancel(task, f"run:{run.parent_run_id}")

    async def _deadline(self, task: queue.Task) -> None:
        run = await self.recorder.known(task)
        timeout = self.recorder.definition(run).timeout if run is not None else None
        message = f"the run took longer than {timeout or 0:g} s"
        await self.recorder.fail(task, {"class": "timeout", "message": message, "retryable": False})
