"""Running a coroutine now, up to its first wait, and letting another task finish it.

The tail's task writes a new event to a thousand streams in one pass (`api/sse.py`,
`Outlet.offer`); a send almost always completes without waiting, but one to a client whose
socket buffer is full waits for it to drain, and the tail's task must not wait with it. So the
send is started here, in the tail's task: if it finished, good; if it waits, what is left of
it (`Rest`) is awaited later by the stream's own task, which resumes it where it stopped.
(Python 3.12's eager tasks do the same for a whole task; this is for 3.11, and for one call.)

Every step of the coroutine runs in the context it was given, whichever task runs it, so a
context variable set before its wait is still set after it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Coroutine, Generator
from typing import Any


class Rest:
    """The rest of a coroutine that waited: awaiting it resumes it until it returns."""

    __slots__ = ("_context", "_coroutine", "_waiting_on")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, None],
        waiting_on: Any,
        context: contextvars.Context,
    ) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on  # what it yielded to its task: usually a future
        self._context = context

    def __await__(self) -> Generator[Any, Any, None]:
        waiting_on = self._waiting_on
        while True:
            step: Callable[[], Any]
            try:
                sent = yield waiting_on  # the awaiting task waits on it, as the coroutine would
            except BaseException as error:  # e.g. cancelled while it waited: pass it on
                step = functools.partial(self._coroutine.throw, error)
            else:
                step = functools.partial(self._coroutine.send, sent)
            try:
                waiting_on = self._context.run(step)
            except StopIteration:
                return

    def close(self) -> None:
        """Abandons it: its `finally` blocks run now."""
        self._coroutine.close()


def start(coroutine: Coroutine[Any, Any, None], context: contextvars.Context) -> Rest | None:
    """Runs `coroutine` in `context` until it returns (None) or first waits (what is left of
    it). An exception it raises before it waits is raised here."""
    try:
        waiting_on = context.run(coroutine.send, None)
    except StopIteration:
        return None
    return Rest(coroutine, waiting_on, context)
