"""A broadcast "something changed" for tasks of one event loop, safe to cancel a wait on.

Waiters remember `generation` before looking at the state they care about and wait for it to
move on, so a change that happens between their look and their wait is never missed.
(`asyncio.Condition` needs its lock re-acquired after a wake-up, and a wait cancelled at that
moment raised "Lock is not acquired" on Python 3.11.)

A wait is one future of its own, awaited directly: `fire` resolves it, and so do the caller's
`unless` (e.g. "this stream must end") and the timeout, through callbacks — no task, no
`asyncio.wait` (which builds sets, callbacks and a waiter per call) and, without a timeout, no
timer. A thousand live streams woken by one event cost a thousand `set_result` calls.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any


class Signal:
    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[bool]] = set()

    def fire(self) -> None:
        self.generation += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _settle(waiter, True)

    async def wait(
        self, seen: int, timeout: float | None, *, unless: asyncio.Future[Any] | None = None
    ) -> bool:
        """Return once `generation` differs from `seen`, `unless` is done, or after `timeout`
        seconds (None: no limit); False only in the last case."""
        if self.generation != seen or (unless is not None and unless.done()):
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _settle, waiter, False)
        wake = functools.partial(_woken_by, waiter)
        if unless is not None:
            unless.add_done_callback(wake)
        try:
            return await waiter
        finally:
            self._waiters.discard(waiter)
            if timer is not None:
                timer.cancel()
            if unless is not None:
                unless.remove_done_callback(wake)


def _settle(waiter: asyncio.Future[bool], result: bool) -> None:
    if not waiter.done():  # a cancelled wait leaves its future cancelled
        waiter.set_result(result)


def _woken_by(waiter: asyncio.Future[bool], _done: asyncio.Future[Any]) -> None:
    _settle(waiter, True)
