"""`lazy.BuiltOnFirstUse`: what the demo services and the MCP endpoint rely on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from workflow_engine.lazy import BuiltOnFirstUse


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.entered = 0
        self.tasks: list[asyncio.Task[object] | None] = []

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        self.tasks.append(asyncio.current_task())
        try:
            yield
        finally:
            self.tasks.append(asyncio.current_task())

    async def enter(self, stack: contextlib.AsyncExitStack) -> None:
        self.entered += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise OSError("cannot build")
        await stack.enter_async_context(self.context())


async def test_ready_before_start_names_the_part() -> None:
    part = BuiltOnFirstUse("demo services", Recorder().enter)
    with pytest.raises(RuntimeError, match="the demo services is not running"):
        await part.ready()


async def test_a_part_nobody_asked_for_is_never_built() -> None:
    recorder = Recorder()
    part = BuiltOnFirstUse("thing", recorder.enter)
    await part.start()
    await part.stop()
    assert recorder.entered == 0
    assert not part.built


async def test_concurrent_first_uses_build_once_and_one_task_enters_and_leaves() -> None:
    recorder = Recorder()
    part = BuiltOnFirstUse("thing", recorder.enter)
    await part.start()
    await asyncio.gather(*(part.ready() for _ in range(5)))
    assert recorder.entered == 1
    assert part.built
    await part.stop()
    entered_by, left_by = recorder.tasks
    assert entered_by is left_by
    assert entered_by is not asyncio.current_task()


async def test_a_failed_build_reaches_every_waiter() -> None:
    part = BuiltOnFirstUse("thing", Recorder(fail=True).enter)
    await part.start()
    results = await asyncio.gather(part.ready(), part.ready(), return_exceptions=True)
    assert [type(result) for result in results] == [OSError, OSError]
    assert not part.built
    await part.stop()
