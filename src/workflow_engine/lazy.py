"""Loading a large optional package on first use, from a running event loop.

Packages that only some deployments use (the MCP SDK above all: about 20 MB and half a second
to import) are imported where they are first needed, not at start-up; docs/architecture.md
("What is loaded when") lists them. When that first use happens in a serving process, an
import on the event loop would stall every request and step for as long as it takes, so it
runs in a thread instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable

_imported: set[str] = set()


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


async def import_off_loop(*modules: str) -> None:
    """Import `modules` without blocking the event loop (a no-op when this imported them
    before). An ImportError is raised here, as the import statement would raise it."""
    missing = tuple(module for module in modules if module not in _imported)
    if missing:
        # Not `sys.modules`: a module another thread is still importing is already there.
        # In the thread, Python's per-module import locks make this import wait for that one.
        await asyncio.to_thread(_import_all, missing)
        _imported.update(missing)


class BuiltOnFirstUse:
    """A part of a lifecycle service that is built and entered when first used, by one task of
    its own, and left when the service stops.

    One task, because the MCP SDK's session managers run a task group that must be left by the
    task that entered it, while the lifecycle may start and stop a service from different
    tasks. The task is started with the service (in the lifespan's context) and waits; the
    first `ready()` makes it call `enter`, which imports what it needs (`import_off_loop`) and
    enters its contexts on the given stack. `what` names the part in errors.
    """

    def __init__(
        self, what: str, enter: Callable[[contextlib.AsyncExitStack], Awaitable[None]]
    ) -> None:
        self._what = what
        self._enter = enter
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._wanted = asyncio.Event()
        self._closing = asyncio.Event()
        self._built = False

    @property
    def built(self) -> bool:
        return self._built

    async def start(self) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        self._wanted = asyncio.Event()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._own(self._ready), name=self._what)

    async def ready(self) -> None:
        """Wait until the part is built and entered (building it on the first call)."""
        if self._ready is None:
            # As the SDK's own session manager says when its `run()` was not entered.
            raise RuntimeError(f"the {self._what} is not running (the app's lifespan is off)")
        self._wanted.set()
        await asyncio.shield(self._ready)

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            await self._wanted.wait()
            async with contextlib.AsyncExitStack() as stack:
                await self._enter(stack)
                self._built = True
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            if ready.done():
                raise
            if not isinstance(exc, asyncio.CancelledError):
                ready.set_exception(exc)  # the requests waiting for it raise it
                return
            ready.set_exception(RuntimeError(f"the {self._what} has stopped"))
            ready.exception()  # retrieved: no warning when no request was waiting
            raise

    async def stop(self) -> None:
        if self._owner is not None:
            self._closing.set()
            if not self._wanted.is_set():
                self._owner.cancel()  # never asked for: nothing was built
            with contextlib.suppress(asyncio.CancelledError):
                await self._owner
            self._owner = None
