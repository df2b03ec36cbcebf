"""Wake-ups for log followers: "the log may have grown, read it again".

A wake-up carries no events — followers always read from the database, so a missed or
spurious wake-up costs latency, never correctness. Sources:

- in this process, the database's commit listener for transactions that appended;
- a poller that watches the highest position (every `POLL_INTERVAL`), which sees appends from
  any process on SQLite and PostgreSQL alike;
- on PostgreSQL, a dedicated LISTEN connection outside the pool (a pooled connection would lose
  the LISTEN when returned; pitfall 5 in docs/architecture.md) that wakes
  followers as soon as an appending transaction commits (`insert_events` sends the NOTIFY);
  it reconnects after a database restart and wakes everyone once connected, since
  notifications sent while it was away are lost.

Followers also re-read after `FOLLOW_TIMEOUT` without any wake-up: an event below a late
commit only becomes visible when the older transaction ends, which no append announces.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from workflow_engine.db import Database
from workflow_engine.db.listener import Listening, listen
from workflow_engine.events.signal import Signal
from workflow_engine.events.store import APPENDED, NOTIFY_CHANNEL, last_position

logger = structlog.get_logger(__name__)

POLL_INTERVAL = 0.25
FOLLOW_TIMEOUT = 1.0


class LogNotifier:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._woken = Signal()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = Listening()

    @property
    def listening(self) -> bool:
        return self._listening.connected

    async def start(self) -> None:
        if self._tasks:
            return
        self._db.on_commit(APPENDED, self.wake)
        self._tasks.append(asyncio.create_task(self._poll(), name="event-log-poller"))
        if not self._db.is_sqlite:
            listening = listen(self._db, NOTIFY_CHANNEL, self.wake, self._listening)
            self._tasks.append(asyncio.create_task(listening, name="event-log-listener"))

    async def stop(self) -> None:
        if not self._tasks:
            return
        self._db.remove_commit_listener(APPENDED, self.wake)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def generation(self) -> int:
        return self._woken.generation

    def wake(self) -> None:
        self._woken.fire()

    async def wait(self, seen: int, timeout: float = FOLLOW_TIMEOUT) -> None:
        """Return once a wake-up came after the caller read `generation` (`seen`), or after
        `timeout` seconds, whichever comes first."""
        await self._woken.wait(seen, timeout)

    async def _poll(self) -> None:
        seen = -1
        while True:
            try:
                async with self._db.read() as conn:
                    head = await last_position(conn)
                if head != seen:
                    seen = head
                    self.wake()
            except Exception as exc:  # the database is away: health reports it; keep trying
                logger.debug("event log poll failed", error=type(exc).__name__)
            await asyncio.sleep(POLL_INTERVAL)
