"""Waiting for a run to end, woken by its end rather than by asking the database again and again.

`RunWaiter.until_finished(tenant_id, run, seconds)` returns the run as last read: finished
(completed, failed or cancelled) as soon as the transaction that ended it has committed and the
log tail has read it, or as it is when `seconds` have passed. Guarantees:

- It is woken by the run's end. It follows the process's shared log tail (`events/tail.py`),
  which reads the log whenever the notifier (`events/notifier.py`) says it grew: a commit in
  this process (`Database.on_commit`), a NOTIFY on PostgreSQL from any process — a standalone
  `workflow-engine worker` included — or the notifier's watch of the log's head, which sees
  other processes on SQLite. The tail's window says which runs ended; the waiter reads its run
  only when that run's `WorkflowCompleted`, `WorkflowFailed` or `WorkflowCancelled` is in it.
  Besides, it reads the run once after it starts watching (the run may have ended before), once
  when the window no longer reaches back to where it looked (more than a window of events in
  between), and once when the time is up, so that the answer then carries the current status.
  Waiters of slow runs cost no queries of their own, however many there are.
- It holds no database connection while it waits: each read is a short read transaction.
- A database error while it waits never loses the answer: it goes on waiting and in the end
  returns the run as it last read it (the trigger's own record at worst), so a client that
  triggered a run always learns its id.
- Cancelling it (a client that went away) stops only the waiting: the run is durable and goes
  on, whoever runs it.
- With `progress`, it is woken by every event of the run, not only its end, and hands the run
  as read to `progress` whenever it is still going (an MCP tool call reports its steps so).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import structlog

from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import FINAL_STATUS
from workflow_engine.engine.runs import RunService
from workflow_engine.engine.states import RUN_FINISHED
from workflow_engine.events.store import LogKey, RecordedEvent
from workflow_engine.events.tail import LogTail

logger = structlog.get_logger(__name__)

# The events that end a run (a run's event types are part of the stored log: they never change).
RUN_ENDINGS = frozenset(FINAL_STATUS)


class RunWaiter:
    def __init__(self, runs: RunService, tail: LogTail) -> None:
        self._runs = runs
        self._tail = tail

    async def until_finished(
        self,
        tenant_id: uuid.UUID,
        run: RunRecord,
        seconds: float,
        *,
        progress: Callable[[RunRecord], Awaitable[None]] | None = None,
    ) -> RunRecord:
        """`run` as last read: finished, or still going once `seconds` have passed; meanwhile
        `progress` (when given) gets the run each time one of its events was read."""
        if run.status in RUN_FINISHED:
            return run
        deadline = time.monotonic() + seconds
        endings = RUN_ENDINGS if progress is None else None
        with self._tail.following():
            watched = await self._start_watching(deadline)
            while True:
                run = await self._read(tenant_id, run)
                if run.status in RUN_FINISHED or watched is None:
                    return run
                if progress is not None:
                    await progress(run)
                watched = await self._next_look(tenant_id, str(run.id), watched, deadline, endings)

    async def _start_watching(self, deadline: float) -> LogKey | None:
        """The tail's end, once it has one (it looks for the log's head when its first follower
        arrives); None when the time ran out first. Every event after it will be in the window,
        and everything up to it was committed before the read that follows."""
        tail = self._tail
        while True:
            seen = tail.generation
            if (end := tail.end) is not None:
                return end
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await tail.wait(seen, remaining)

    async def _next_look(
        self,
        tenant_id: uuid.UUID,
        aggregate: str,
        watched: LogKey,
        deadline: float,
        types: frozenset[str] | None = RUN_ENDINGS,
    ) -> LogKey | None:
        """Wait until the window holds an event of the run of one of `types` (its end; any
        type when None) after `watched`, or no longer reaches back to `watched`; return where
        to watch from after reading the run, or None when the time is up."""
        tail = self._tail

        def wakes(event: RecordedEvent) -> bool:
            return (
                event.aggregate_id == aggregate
                and (types is None or event.event_type in types)
                and event.tenant_id == tenant_id
            )

        while True:
            seen = tail.generation  # before looking: a change after the look is not missed
            while recent := tail.since(watched):
                watched = recent[-1].key
                if any(wakes(event) for event in recent):
                    return watched
            if recent is None and (end := tail.end) is not None:
                return end  # out of reach: read the run, then watch from the tail's end
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await tail.wait(seen, remaining)

    async def _read(self, tenant_id: uuid.UUID, run: RunRecord) -> RunRecord:
        try:
            return await self._runs.get(tenant_id, run.id)
        except Exception as exc:  # the database is away: answer with the run as last read
            logger.warning(
                "reading a waited-for run failed", run_id=str(run.id), error=type(exc).__name__
            )
            return run
