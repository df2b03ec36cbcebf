"""The worker: claims tasks, runs steps, and carries out what the scheduling rules decide.

For each claimed step task:

1. Read the run (no transaction held): skip the step if its `if` is false; evaluate its
   arguments (in a thread when they may be costly, under the expression deadline).
2. One transaction: lock the run, check it is still active and the lease still ours, append
   `StepStarted`.
3. Run the node with no database session held (a pooled connection is never pinned by a
   node: pitfall 12 in docs/architecture.md), under the step's timeout, while a heartbeat
   renews the lease and watches the run: a lost lease, a cancel or a failed run interrupts
   the node (its coroutine is cancelled).
4. One transaction: lock the run, delete the task only if the lease is still ours (a worker
   that lost it records nothing), read the run, and carry out `scheduler.settle`'s decision:
   the outcome and whatever follows from it (a retry with backoff, the steps that became
   ready or were skipped, the run failed or its output due).
   Steps that became ready are leased to this worker in that transaction when it has room,
   and start as soon as it commits with the run as the decision left it (no claim, no
   wake-up, no read: step 1 uses that snapshot); the rest wait in the queue for any worker.

Steps are at-least-once (a worker that dies mid-step leaves a lease that expires, and another
worker runs the step again); their recorded outcome is exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.config import Settings
from workflow_engine.db import Database
from workflow_engine.db.listener import listen
from workflow_engine.db.tables import tasks, workflow_runs
from workflow_engine.engine import expressions, queue, scheduler
from workflow_engine.engine.definitions import StepDefinition, WorkflowDefinition
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.run_logs import RunLogBuffer
from workflow_engine.engine.run_metrics import count_step
from workflow_engine.engine.runs import (
    RUN_CANCELLED,
    Origin,
    RunRecord,
    append_run_events,
    leased_step_ids,
    lock_run,
    lock_run_status,
    read_run_unconfined,
    run_context,
    run_state,
    with_state,
)
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import RUN_ACTIVE
from workflow_engine.engine.states import Outcome as OutcomeKind
from workflow_engine.events.signal import Signal
from workflow_engine.events.storable import check_document, storable_text
from workflow_engine.events.store import NewEvent
from workflow_engine.integrations.llm.providers import llm_settings
from workflow_engine.integrations.mcp import MCPClients, MCPServerConfig, mcp_server_configs
from workflow_engine.net.addresses import NetworkPolicy
from workflow_engine.nodes.registry import (
    FatalStepError,
    NodeContext,
    NodeRegistry,
    NodeSettings,
    StepError,
)
from workflow_engine.observability import metrics, tracing
from workflow_engine.registry.discovery import RegistryDiscovery
from workflow_engine.registry.options import RegistryOptions

logger = structlog.get_logger(__name__)

DEFINITIONS_CACHED = 1024  # parsed definitions of recent runs (a run's never changes)


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 16
    lease: timedelta = timedelta(seconds=30)
    heartbeat: float = 0.5  # seconds between lease renewals and cancel checks
    poll: float = 1.0  # the safety net when no wake-up comes
    expression_timeout: float = expressions.DEFAULT_TIMEOUT
    node_settings: NodeSettings = field(default_factory=NodeSettings)
    env: Mapping[str, str] = field(default_factory=dict)  # what expressions see as `env`
    mcp_servers: tuple[MCPServerConfig, ...] = ()
    # Where MCP servers found in the registry may be (the registry's network policy).
    registry_policy: NetworkPolicy = field(default_factory=NetworkPolicy)


def worker_options(settings: Settings) -> WorkerOptions:
    """A worker configured as the settings say (embedded or standalone alike)."""
    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        lease=timedelta(seconds=settings.worker_lease_seconds),
        node_settings=NodeSettings(
            http_allowed_hosts=tuple(settings.http_allowed_hosts),
            http_max_response_bytes=settings.http_max_response_bytes,
            llm=llm_settings(settings),
        ),
        env={name: os.environ[name] for name in settings.workflow_env if name in os.environ},
        mcp_servers=mcp_server_configs(
            settings, demo_base=settings.demo_base_url if settings.demo_services_enabled else None
        ),
        registry_policy=RegistryOptions.from_settings(settings).policy,
    )


class Worker:
    def __init__(
        self, db: Database, nodes: NodeRegistry, options: WorkerOptions | None = None
    ) -> None:
        self.db = db
        self.nodes = nodes
        self.options = options or WorkerOptions()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = Signal()
        self._cancel_check = Signal()
        self._active: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._definitions: OrderedDict[uuid.UUID, WorkflowDefinition] = OrderedDict()
        # Sessions reused across steps; servers not configured are looked up in the registry.
        self.mcp = MCPClients(
            self.options.mcp_servers, RegistryDiscovery(db, self.options.registry_policy)
        )

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
            for task in claimed:
                self._spawn(task)
            if claimed and len(claimed) == free:
                continue  # perhaps more are ready
            if not claimed:
                await self._wake.wait(seen, wait)
            else:
                await self._wake.wait(self._wake.generation, wait)

    def _spawn(self, task: queue.Task, run: RunRecord | None = None) -> None:
        self._active[task.id] = asyncio.create_task(
            self._run_task(task, run), name=f"task-{task.step_id}"
        )

    def _room(self) -> int:
        """Tasks the worker could start now, counting the slot of the caller (a running task
        about to end) as free."""
        if self._stopping.is_set():
            return 0
        return max(0, self.options.concurrency - len(self._active) + 1)

    async def _run_task(self, task: queue.Task, run: RunRecord | None = None) -> None:
        """`run`: the run as the worker that handed this task to itself last read it."""
        log = logger.bind(run_id=str(task.run_id), step=task.step_id, attempt=task.attempt,
                          correlation_id=task.correlation_id)  # fmt: skip
        attributes = {"workflow.run_id": str(task.run_id), "workflow.step_id": task.step_id,
                      "workflow.attempt": task.attempt}  # fmt: skip
        with tracing.span(f"step {task.step_id}", parent=task.trace_context, kind="consumer",
                          attributes=attributes):  # fmt: skip
            await self._handle(task, log, run)

    async def _handle(self, task: queue.Task, log: Any, run: RunRecord | None) -> None:
        try:
            if task.claims > queue.MAX_CLAIMS:
                await self._give_up(task)
            elif task.step_id == queue.FINISH:
                await self._finish_run(task, run)
            elif task.step_id == queue.DEADLINE:
                await self._deadline(task)
            else:
                await self._run_step(task, log, run)
        except asyncio.CancelledError:
            await self._release(task)
        except Exception:
            # The lease will expire and another claim retries the task.
            log.exception("task failed unexpectedly; it will be retried when its lease expires")
        finally:
            self._active.pop(task.id, None)
            self._wake.fire()

    async def _release(self, task: queue.Task) -> None:
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await queue.release(conn, task.id, self.owner)

    # --- a step ----------------------------------------------------------------------------

    async def _run_step(self, task: queue.Task, log: Any, run: RunRecord | None) -> None:
        if run is None:
            async with self.db.read() as conn:
                run = await read_run_unconfined(conn, task.run_id)
        if run is None:
            await self._drop(task)
            return
        step = self._definition(run).step(task.step_id)
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
                await self._record(task, _failure("expression", str(exc), retryable=False))
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
        buffer = RunLogBuffer(log)
        result = await self._invoke(task, run, step, arguments, buffer)
        failed = result.outcome is OutcomeKind.failed
        error = (result.error or {}).get("message") if failed else None
        tracing.annotate({"workflow.name": run.workflow_name, "workflow.node": step.uses,
                          "workflow.outcome": str(result.outcome)}, error=error)  # fmt: skip
        await self._record(task, result, buffer.drain())

    def _definition(self, run: RunRecord) -> WorkflowDefinition:
        return self._definitions.get(run.id) or self._remember(run.id, run.definition)

    def _remember(self, run_id: uuid.UUID, document: dict[str, Any]) -> WorkflowDefinition:
        definition = WorkflowDefinition.model_validate(document)
        self._definitions[run_id] = definition
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
        async with self.db.transaction() as conn:
            if await lock_run_status(conn, task.run_id) not in RUN_ACTIVE:
                return "inactive"
            if not await queue.renew(conn, task.id, self.owner, self.options.lease):
                return "lost"
            await append_run_events(
                conn, task.tenant_id, task.run_id,
                [NewEvent(RunEvent.step_started, {"step_id": task.step_id, "attempt": task.attempt,
                                          "worker": self.owner}, self._meta(task))],
                locked=True,
            )  # fmt: skip
        waited = (datetime.now(UTC) - task.available_at).total_seconds()
        metrics.schedule_to_start.observe(max(waited, 0.0))
        return "started"

    async def _invoke(
        self,
        task: queue.Task,
        run: RunRecord,
        step: StepDefinition,
        arguments: dict[str, Any],
        buffer: RunLogBuffer,
    ) -> StepResult:
        if step.uses not in self.nodes:
            return _failure("unknown_node", f"node type {step.uses!r} is not loaded here", False)
        context = NodeContext(
            run_id=run.id, tenant_id=run.tenant_id, workflow_name=run.workflow_name,
            step_id=step.id, attempt=task.attempt, log=buffer,
            settings=self.options.node_settings, mcp=self.mcp,
        )  # fmt: skip
        function = self.nodes.get(step.uses)
        try:
            coroutine = function(context, **arguments)
        except TypeError as exc:  # arguments the node does not take, or lacks
            return _failure("bad_arguments", f"{step.uses}: {exc}", False)
        node = asyncio.create_task(coroutine, name=f"node-{step.uses}")
        interrupted: list[str] = []
        watcher = asyncio.create_task(self._watch(task, node, context, buffer, interrupted))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.timeout):
                output = await node
        except TimeoutError:
            return _failure("timeout", f"the step took longer than {step.timeout:g} s", True)
        except asyncio.CancelledError:
            if not interrupted:
                node.cancel()
                raise  # the worker itself is stopping
            return StepResult(OutcomeKind(interrupted[0]))
        except FatalStepError as exc:
            return _failure(exc.error_class, str(exc), False)
        except StepError as exc:
            return _failure(exc.error_class, str(exc), True)
        except Exception as exc:
            return _failure(type(exc).__name__, str(exc) or type(exc).__name__, True)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        elapsed = (time.perf_counter() - started) * 1000
        try:
            check_document("output", output if isinstance(output, dict) else {"v": output})
        except Exception as exc:
            return _failure("invalid_output", f"the node's output cannot be stored: {exc}", False)
        return StepResult(OutcomeKind.completed, output=output, duration_ms=round(elapsed, 3))

    async def _watch(
        self,
        task: queue.Task,
        node: asyncio.Task[Any],
        context: NodeContext,
        buffer: RunLogBuffer,
        interrupted: list[str],
    ) -> None:
        """Renew the lease and watch the run while the node runs, appending what it logged;
        interrupt the node when the lease is lost or the run stops (cancelled, failed, timed
        out)."""
        while not node.done():
            seen = self._cancel_check.generation
            await self._cancel_check.wait(seen, self.options.heartbeat)
            try:
                async with self.db.transaction() as conn:
                    entries = buffer.drain()
                    try:
                        # Appending the entries takes the run's lock, as every appender does.
                        status = await (lock_run_status if entries else _run_status)(
                            conn, task.run_id
                        )
                        held = await queue.renew(conn, task.id, self.owner, self.options.lease)
                        if held and entries:
                            await append_run_events(
                                conn, task.tenant_id, task.run_id,
                                [_logged(task, entries, self._meta(task))], locked=True,
                            )  # fmt: skip
                    except BaseException:
                        buffer.restore(entries)  # not committed: they go out later
                        raise
            except Exception as exc:  # keep the node running; the lease has slack
                logger.warning("heartbeat failed", error=type(exc).__name__)
                continue
            if not held or status not in RUN_ACTIVE:
                interrupted.append("lost" if not held else "cancelled")
                context.cancelled.set()
                node.cancel()
                return

    # --- outcomes ------------------------------------------------------------------------

    async def _record(
        self, task: queue.Task, result: StepResult, logs: list[dict[str, Any]] | None = None
    ) -> None:
        """Record how an attempt ended (and what its node logged and was not yet appended)."""
        if result.outcome is OutcomeKind.lost:
            return
        async with self.db.transaction() as conn:
            handed, run = await self._settle(conn, task, result, logs or [])
        await self._take(handed, run)

    async def _take(self, handed: list[queue.Task], run: RunRecord | None) -> None:
        """Start the tasks this worker handed itself; give back any it has no room for now
        (another task was claimed meanwhile)."""
        room = self._room()
        for task in handed[:room]:
            self._spawn(task, run)
        if handed[room:]:
            async with self.db.transaction() as conn:
                for task in handed[room:]:
                    await queue.release(conn, task.id, self.owner)

    async def _settle(
        self,
        conn: AsyncConnection,
        task: queue.Task,
        result: StepResult,
        logs: list[dict[str, Any]],
    ) -> tuple[list[queue.Task], RunRecord | None]:
        """Record the outcome; returns the tasks handed to this worker and the run they see."""
        await lock_run_status(conn, task.run_id)
        if not await queue.finish(conn, task.id, self.owner):
            return [], None  # lost the lease: whoever holds it now records the outcome
        run = await read_run_unconfined(conn, task.run_id)
        assert run is not None  # runs are never deleted while their tasks exist
        definition = self._definition(run)
        state = run_state(run, await leased_step_ids(conn, task.run_id))
        decision = scheduler.settle(
            definition, state, task.step_id, task.attempt, result,
            now=datetime.now(UTC), jitter=random.uniform(-1.0, 1.0),
        )  # fmt: skip
        if decision.counted is not None:
            duration = None if decision.counted in ("skipped", "cancelled") else result.duration_ms
            count_step(conn, definition.step(task.step_id).uses, decision.counted, duration)
        logged = [_logged(task, logs, self._meta(task))] if logs else []
        return await self._carry_out(conn, task, decision, logged, run, result)

    async def _carry_out(
        self,
        conn: AsyncConnection,
        task: queue.Task,
        decision: scheduler.Decision,
        logs: list[NewEvent] | None = None,
        run: RunRecord | None = None,
        result: StepResult | None = None,
    ) -> tuple[list[queue.Task], RunRecord | None]:
        """Record a decision in the caller's transaction (the run locked): its events, the
        tasks it drops and enqueues. Returns the tasks handed to this worker and the run as
        they see it (None when nothing is handed)."""
        meta = self._meta(task)
        events = (logs or []) + [NewEvent(kind, data, meta) for kind, data in decision.events]
        await append_run_events(conn, task.tenant_id, task.run_id, events, locked=True)
        if decision.drop_waiting:
            await queue.drop_waiting(conn, task.run_id)
        if decision.retry is not None:
            retry = decision.retry
            await queue.enqueue(
                conn, [task.follow_on(retry.step_id, attempt=retry.attempt, available_at=retry.at)]
            )
        ready = [task.follow_on(step_id) for step_id in decision.ready]
        if decision.finished:
            ready.append(task.follow_on(queue.FINISH, priority=1))
        if not ready:
            return [], None
        room = self._room()
        handed = await queue.enqueue_leased(conn, ready[:room], self.owner, self.options.lease)
        await queue.enqueue(conn, ready[room:])
        after = None if run is None else with_state(run, decision.state, task.step_id, result)
        return handed, after

    async def _give_up(self, task: queue.Task) -> None:
        """The task's handling failed unexpectedly `MAX_CLAIMS` times (logged each time): fail
        the step, or for a run-level task the run, rather than retry forever."""
        message = f"the engine failed to handle this task {queue.MAX_CLAIMS} times; see the logs"
        if task.step_id not in (queue.FINISH, queue.DEADLINE):
            await self._record(task, _failure("internal", message, False))
            return
        await self._fail_run(task, {"class": "internal", "message": message, "retryable": False})

    async def _fail_run(self, task: queue.Task, error: dict[str, Any]) -> None:
        """Fail the run of a run-level task (`:finish`, `:deadline`) that still holds it."""
        async with self.db.transaction() as conn:
            await lock_run_status(conn, task.run_id)
            if not await queue.finish(conn, task.id, self.owner):
                return
            run = await read_run_unconfined(conn, task.run_id)
            if run is None or run.status not in RUN_ACTIVE:
                return
            state = run_state(run, await leased_step_ids(conn, task.run_id))
            decision = scheduler.fail(self._definition(run), state, error)
            await self._carry_out(conn, task, decision)

    async def _finish_run(self, task: queue.Task, run: RunRecord | None) -> None:
        if run is None:
            async with self.db.read() as conn:
                run = await read_run_unconfined(conn, task.run_id)
        if run is None or run.status not in RUN_ACTIVE:
            await self._drop(task)
            return
        definition = self._definition(run)
        error: dict[str, Any] | None = None
        output: Any = None
        try:
            output = await self._evaluate(definition.output, run_context(run, self.options.env))
        except expressions.ExpressionError as exc:
            error = {"class": "expression", "message": f"output: {exc}", "retryable": False}
        async with self.db.transaction() as conn:
            run = await lock_run(conn, task.tenant_id, task.run_id)
            if not await queue.finish(conn, task.id, self.owner) or run.status not in RUN_ACTIVE:
                return
            await conn.execute(
                delete(tasks).where(tasks.c.run_id == run.id, tasks.c.step_id == queue.DEADLINE)
            )
            event = (
                NewEvent(RunEvent.failed, {"error": error}, self._meta(task))
                if error is not None
                else NewEvent(RunEvent.completed, {"output": output}, self._meta(task))
            )
            await append_run_events(conn, task.tenant_id, task.run_id, [event], locked=True)

    async def _deadline(self, task: queue.Task) -> None:
        async with self.db.read() as conn:
            run = await read_run_unconfined(conn, task.run_id)
        timeout = self._definition(run).timeout if run is not None else None
        message = f"the run took longer than {timeout or 0:g} s"
        await self._fail_run(task, {"class": "timeout", "message": message, "retryable": False})

    async def _drop(self, task: queue.Task) -> None:
        async with self.db.transaction() as conn:
            await queue.finish(conn, task.id, self.owner)

    def _meta(self, task: queue.Task) -> dict[str, Any]:
        return Origin(f"worker:{self.owner}", task.correlation_id, "worker").metadata()


def _logged(task: queue.Task, entries: list[dict[str, Any]], meta: dict[str, Any]) -> NewEvent:
    data = {"step_id": task.step_id, "attempt": task.attempt, "entries": entries}
    return NewEvent(RunEvent.step_logged, data, meta)


def _failure(error_class: str, message: str, retryable: bool) -> StepResult:
    return StepResult(
        OutcomeKind.failed,
        error={"class": storable_text(error_class)[:100], "message": storable_text(message)[:2000],
               "retryable": retryable},
        retryable=retryable,
    )  # fmt: skip


async def _run_status(conn: AsyncConnection, run_id: uuid.UUID) -> str | None:
    found = await conn.execute(select(workflow_runs.c.status).where(workflow_runs.c.id == run_id))
    return found.scalar_one_or_none()
