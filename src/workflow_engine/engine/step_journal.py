"""The journal a worker gives a node (`ctx.journal`, nodes/journal.py): entries are
`StepRecorded` events on the run, appended under the attempt's lease, and read back from the
run's events when a node asks for them (once per attempt; most nodes never do)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from workflow_engine.db import Database
from workflow_engine.db.tables import events
from workflow_engine.engine import queue
from workflow_engine.engine.recorder import RunRecorder
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.engine.run_logs import RunLogBuffer
from workflow_engine.events.storable import check_document
from workflow_engine.nodes.journal import JournalLost

_RECORDED = (
    select(events.c.data)
    .where(
        events.c.tenant_id == bindparam("tenant_id"),
        events.c.aggregate_id == bindparam("run_id"),
        events.c.aggregate_type == RUN_AGGREGATE,
        events.c.event_type == RunEvent.step_recorded.value,
    )
    .order_by(events.c.version)
)


class WorkerJournal:
    def __init__(
        self, db: Database, recorder: RunRecorder, task: queue.Task, buffer: RunLogBuffer
    ) -> None:
        self._db = db
        self._recorder = recorder
        self._task = task
        self._buffer = buffer
        self._entries: list[dict[str, Any]] | None = None

    async def entries(self) -> list[dict[str, Any]]:
        if self._entries is None:
            async with self._db.read() as conn:
                rows = await conn.execute(
                    _RECORDED, {"tenant_id": self._task.tenant_id, "run_id": str(self._task.run_id)}
                )
                self._entries = [
                    data["entry"] for (data,) in rows if data.get("step_id") == self._task.step_id
                ]
        return list(self._entries)

    async def record(self, entry: dict[str, Any]) -> None:
        check_document("journal entry", entry)
        known = await self.entries()  # so that a later `entries()` includes this one
        # What the node logged so far goes first: the run's log reads in the order it happened.
        logs = self._buffer.drain()
        if not await self._recorder.journal(self._task, entry, logs):
            raise JournalLost(f"step {self._task.step_id} is no longer held by this attempt")
        known.append(entry)
        self._entries = known
