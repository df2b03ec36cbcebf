"""A lifecycle service that does a pass of work, sleeps, and does it again until stopped.

Background duties of a server process (firing schedules, sealing the event log) share this
loop. A failed pass never stops it: health turns degraded with the reason until a pass
succeeds, a database outage is logged once (`db/availability.py`) and anything else once per
failed pass, and the next pass comes after `retry_after` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod

import structlog

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.db.availability import availability, unreachable

logger = structlog.get_logger(__name__)


class PeriodicService(ABC):
    def __init__(self, name: str, duty: str, *, retry_after: float) -> None:
        """`name`: the service's (its task's, its outage log's); `duty`: what a pass does, as
        in "<duty> failed"."""
        self._name = name
        self._duty = duty
        self._retry_after = retry_after
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None

    @abstractmethod
    async def run_pass(self) -> float:
        """Do one pass; returns the seconds to sleep before the next."""

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_health(self) -> Health:
        if self._task is None or self._task.done():
            return Health.down("not running")
        if self._last_error is not None:
            return Health.degraded(self._last_error)
        return Health.ok()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = await self.run_pass()
                self._last_error = None
            except Exception as exc:  # the database is away, say: health tells; try again
                self._last_error = f"{self._duty} failed: {type(exc).__name__}"
                if unreachable(exc):
                    availability.failed(exc, self._name)  # logged once an outage
                else:
                    logger.warning(f"{self._duty} failed", error=type(exc).__name__)
                wait = self._retry_after
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
