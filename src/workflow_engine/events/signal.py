"""A broadcast "something changed" for tasks of one event loop, safe to cancel a wait on.

Waiters remember `generation` before looking at the state they care about and wait for it to
move on, so a change that happens between their look and their wait is never missed.
(`asyncio.Condition` needs its lock re-acquired after a wake-up, and a wait cancelled at that
moment raised "Lock is not acquired" on Python 3.11.)
"""

from __future__ import annotations

import asyncio
import contextlib


class Signal:
    def __init__(self) -> None:
        self.generation = 0
        self._changed = asyncio.Event()

    def fire(self) -> None:
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once `generation` differs from `seen`, or after `timeout` seconds."""
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
