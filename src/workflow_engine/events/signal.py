"""A broadcast "something changed" for tasks of one event loop, safe to cancel a wait on.

Waiters remember `generation` before looking at the state they care about and wait for it to
move on, so a change that happens between their look and their wait is never missed.
(`asyncio.Condition` needs its lock re-acquired after a wake-up, and a wait cancelled at that
moment raised "Lock is not acquired" on Python 3.11.)

All waiters of one generation share one future: a fire resolves it once, and a wait may also
end on a future of the caller's (`unless`, e.g. "this stream must close") without a task of
its own — a thousand live streams wait on two futures each, not on a thousand task groups.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Signal:
    def __init__(self) -> None:
        self.generation = 0
        self._fired: asyncio.Future[None] | None = None

    def fire(self) -> None:
        self.generation += 1
        fired, self._fired = self._fired, None
        if fired is not None and not fired.done():
            fired.set_result(None)

    async def wait(
        self, seen: int, timeout: float, *, unless: asyncio.Future[Any] | None = None
    ) -> bool:
        """Return once `generation` differs from `seen`, `unless` is done, or after `timeout`
        seconds; False only in the last case."""
        if self.generation != seen or (unless is not None and unless.done()):
            return True
        loop = asyncio.get_running_loop()
        if self._fired is None or self._fired.get_loop() is not loop:
            self._fired = loop.create_future()
        waiting: list[asyncio.Future[Any]] = [self._fired]
        if unless is not None:
            waiting.append(unless)
        # `asyncio.wait` never cancels what it waits on: the shared future stays good for the
        # other waiters when this one times out or is cancelled.
        done, _pending = await asyncio.wait(
            waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        return bool(done)
