"""`Signal`: a fire wakes every waiter, `unless` ends one wait, a timeout says so."""

from __future__ import annotations

import asyncio

from workflow_engine.events.signal import Signal


async def test_a_fire_wakes_waiters_that_also_wait_on_their_own_future() -> None:
    signal = Signal()
    own = [asyncio.get_running_loop().create_future() for _ in range(3)]
    seen = signal.generation
    waiters = [asyncio.create_task(signal.wait(seen, 60, unless=future)) for future in own]
    await asyncio.sleep(0)
    signal.fire()
    async with asyncio.timeout(5):  # a waiter that needs both futures would sit for 60 s
        assert await asyncio.gather(*waiters) == [True, True, True]
    assert not any(future.done() for future in own)


async def test_unless_ends_one_wait_and_leaves_the_others_waiting() -> None:
    signal = Signal()
    closing = asyncio.get_running_loop().create_future()
    seen = signal.generation
    closed = asyncio.create_task(signal.wait(seen, 60, unless=closing))
    other = asyncio.create_task(signal.wait(seen, 60))
    await asyncio.sleep(0)
    closing.set_result("revoked")
    async with asyncio.timeout(5):
        assert await closed is True
    assert not other.done()
    signal.fire()  # the shared future survived the ended wait
    async with asyncio.timeout(5):
        assert await other is True


async def test_a_wait_that_times_out_says_so_and_a_moved_generation_returns_at_once() -> None:
    signal = Signal()
    seen = signal.generation
    assert await signal.wait(seen, 0.01) is False
    signal.fire()
    assert await signal.wait(seen, 60) is True
