"""`eager.start`: a coroutine runs at once up to its first wait, and any task finishes it."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from workflow_engine.api.eager import Rest, start

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def test_a_coroutine_that_never_waits_is_done_at_once() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    assert start(quick(), contextvars.copy_context()) is None
    assert done == ["ran"]


async def test_the_rest_of_a_coroutine_that_waited_is_finished_by_another_task() -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def slow() -> None:
        seen.set("before the wait")
        steps.append("started")
        await gate.wait()
        steps.append(f"resumed, {seen.get()}")

    rest = start(slow(), contextvars.copy_context())
    assert rest is not None
    assert steps == ["started"]
    assert seen.get() == "unset"  # its context is its own, not the caller's
    finisher = asyncio.create_task(_await(rest))
    await asyncio.sleep(0.01)
    assert not finisher.done()
    gate.set()
    await asyncio.wait_for(finisher, 5)
    assert steps == ["started", "resumed, before the wait"]


async def test_cancelling_the_task_that_finishes_it_cancels_the_coroutine() -> None:
    cleaned_up: list[str] = []

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.append("finally")

    rest = start(never(), contextvars.copy_context())
    assert rest is not None
    finisher = asyncio.create_task(_await(rest))
    await asyncio.sleep(0.01)
    finisher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finisher
    assert cleaned_up == ["finally"]


async def _await(rest: Rest) -> None:
    await rest
