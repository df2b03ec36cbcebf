"""Running one attempt of one step's node: its timeout, its heartbeat, and its interruption.

The node runs as its own asyncio task with no database session held (a pooled connection is
never pinned by a node: pitfall 12 in docs/architecture.md). Beside it a watcher beats every
`heartbeat` seconds, or at once when the worker says a run was cancelled: each beat renews the
task's lease, appends what the node logged since the last one, and learns the run's status. A
lost lease, or a run that stopped (cancelled, failed, timed out), cancels the node's coroutine;
the attempt then ends `lost` (record nothing: another worker holds the task) or `cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from workflow_engine.engine.definitions import StepDefinition
from workflow_engine.engine.run_logs import RunLogBuffer
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import Outcome
from workflow_engine.events.signal import Signal
from workflow_engine.events.storable import check_document, storable_text
from workflow_engine.nodes.registry import (
    FatalStepError,
    NodeContext,
    NodeRegistry,
    StepError,
)

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learnt: whether the lease is still held, and whether the run is still
    going (None: could not tell this time, keep running)."""

    held: bool
    active: bool | None


Heartbeat = Callable[[list[dict[str, Any]]], Awaitable[Beat]]


class StepRunner:
    def __init__(self, nodes: NodeRegistry, interval: float, cancel_check: Signal) -> None:
        self.nodes = nodes
        self.interval = interval
        self.cancel_check = cancel_check

    async def run(
        self,
        step: StepDefinition,
        context: NodeContext,
        arguments: dict[str, Any],
        buffer: RunLogBuffer,
        heartbeat: Heartbeat,
    ) -> StepResult:
        """Run the node once; never raises for what the node does (its failure is the
        result), only when the worker itself is being stopped (CancelledError)."""
        if step.uses not in self.nodes:
            return failure("unknown_node", f"node type {step.uses!r} is not loaded here", False)
        function = self.nodes.get(step.uses)
        try:
            coroutine = function(context, **arguments)
        except TypeError as exc:  # arguments the node does not take, or lacks
            return failure("bad_arguments", f"{step.uses}: {exc}", False)
        node = asyncio.create_task(coroutine, name=f"node-{step.uses}")
        interrupted: list[Outcome] = []
        watcher = asyncio.create_task(self._watch(node, context, buffer, heartbeat, interrupted))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.timeout):
                output = await node
        except TimeoutError:
            return failure("timeout", f"the step took longer than {step.timeout:g} s", True)
        except asyncio.CancelledError:
            if not interrupted:
                node.cancel()
                raise  # the worker itself is stopping
            return StepResult(interrupted[0])
        except FatalStepError as exc:
            return failure(exc.error_class, str(exc), False)
        except StepError as exc:
            return failure(exc.error_class, str(exc), True)
        except Exception as exc:
            return failure(type(exc).__name__, str(exc) or type(exc).__name__, True)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        elapsed = (time.perf_counter() - started) * 1000
        try:
            check_document("output", output if isinstance(output, dict) else {"v": output})
        except Exception as exc:
            return failure("invalid_output", f"the node's output cannot be stored: {exc}", False)
        return StepResult(Outcome.completed, output=output, duration_ms=round(elapsed, 3))

    async def _watch(
        self,
        node: asyncio.Task[Any],
        context: NodeContext,
        buffer: RunLogBuffer,
        heartbeat: Heartbeat,
        interrupted: list[Outcome],
    ) -> None:
        while not node.done():
            seen = self.cancel_check.generation
            await self.cancel_check.wait(seen, self.interval)
            entries = buffer.drain()
            try:
                beat = await heartbeat(entries)
            except Exception as exc:  # keep the node running; the lease has slack
                buffer.restore(entries)  # not recorded: they go out later
                logger.warning("heartbeat failed", error=type(exc).__name__)
                continue
            if not beat.held or beat.active is False:
                interrupted.append(Outcome.lost if not beat.held else Outcome.cancelled)
                context.cancelled.set()
                node.cancel()
                return


def failure(error_class: str, message: str, retryable: bool) -> StepResult:
    """A failed attempt, its class and message cut to what is stored."""
    return StepResult(
        Outcome.failed,
        error={"class": storable_text(error_class)[:100], "message": storable_text(message)[:2000],
               "retryable": retryable},
        retryable=retryable,
    )  # fmt: skip
