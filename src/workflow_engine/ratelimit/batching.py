"""Sending what is asked during one turn of the event loop as one call.

Requests that arrive together (a server under load reads several connections per turn) reach
the limiter in the same turn; one call for all of them pays one round trip and one command's
encoding instead of one each. A batch is sent as soon as the turn ends, never held back for
more: an idle server answers as fast as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Bounds the work of one call (a Lua script blocks the Redis server while it runs).
MAX_BATCH = 256


class TurnBatcher(Generic[Item, Result]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
        self._send = send  # answers each item in order, or raises for all of them
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        if not self._pending:
            # Runs after every callback already due in this turn: the rest of the batch.
            loop.call_soon(self._flush)
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.create_task(self._answer(pending[start : start + MAX_BATCH]))
            self._in_flight.add(task)  # a task nobody references may be collected mid-way
            task.add_done_callback(self._in_flight.discard)

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
