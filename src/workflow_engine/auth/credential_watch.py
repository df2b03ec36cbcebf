"""How a process learns, within a second, that a credential lost its standing anywhere.

The database keeps one counter, `credential_epoch.epoch`, which its own triggers move whenever a
user's role, active state or token generation changes, an access token is logged out, a
session is revoked, or an API key is revoked, changed or deleted (migration 0018) — whichever
process, CLI command or hand-written statement made the change. This watch reads the counter
every `POLL_INTERVAL` and, on PostgreSQL, also as soon as the committing transaction's
`NOTIFY` arrives on a dedicated LISTEN connection. When the counter moves, `generation` moves
and `changed` wakes whoever waits: the credential caches drop what they hold and open streams
re-check their caller.

`fresh` says whether the watch has confirmed the counter recently enough for a cached answer to
be trusted: while the database cannot be read, the caches stop answering from memory instead of
vouching for credentials nobody could re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from sqlalchemy import select

from workflow_engine.db import Database
from workflow_engine.db.listener import listen
from workflow_engine.db.tables import credential_epoch
from workflow_engine.events.signal import Signal

logger = structlog.get_logger(__name__)

CHANNEL = "workflow_engine_credentials"  # kept in step with migration 0018
POLL_INTERVAL = 0.25
#: How long a confirmation of the counter stays good. Together with the poll interval, it
#: bounds how stale a cached answer can be: the promise is one second.
FRESH_FOR = 0.75


class CredentialWatch:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._epoch: int | None = None
        self._confirmed_at = float("-inf")
        self.changed = Signal()
        self._woken = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def generation(self) -> int:
        return self.changed.generation

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self._confirmed_at < FRESH_FOR

    async def start(self) -> None:
        await self._check()  # a first answer before the first request
        self._tasks.append(asyncio.create_task(self._poll(), name="credential-watch"))
        if not self._db.is_sqlite:
            listening = listen(self._db, CHANNEL, self._woken.set)
            self._tasks.append(asyncio.create_task(listening, name="credential-listener"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), POLL_INTERVAL)
            self._woken.clear()
            await self._check()

    async def _check(self) -> None:
        try:
            async with self._db.read() as conn:
                epoch = int((await conn.execute(select(credential_epoch.c.epoch))).scalar_one())
        except Exception as exc:  # the database is away: caches stop trusting themselves
            logger.debug("credential epoch read failed", error=type(exc).__name__)
            return
        if epoch != self._epoch:
            self._epoch = epoch
            self.changed.fire()
        self._confirmed_at = time.monotonic()
