"""The shared log tail: caught-up followers read nothing themselves; a follower left behind the
window catches up from the database without a gap or a duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event

from workflow_engine.db import Database
from workflow_engine.events import EventStore, NewEvent
from workflow_engine.events.follower import LogFollower
from workflow_engine.events.notifier import LogNotifier
from workflow_engine.events.tail import LogTail


@pytest.fixture
async def tail(database: Database) -> AsyncIterator[LogTail]:
    notifier = LogNotifier(database)
    await notifier.start()
    log_tail = LogTail(EventStore(database), notifier, window=5)
    await log_tail.start()
    yield log_tail
    await log_tail.stop()
    await notifier.stop()


async def _append(store: EventStore, tenant: uuid.UUID, first: int, count: int) -> None:
    await store.append(
        tenant_id=tenant, aggregate_type="order", aggregate_id="o-1",
        new_events=[NewEvent("Counted", {"n": n}) for n in range(first, first + count)],
        expected_version=None,
    )  # fmt: skip


class Reader:
    """Pulls a follower's messages only when asked: a consumer as slow as the test wants."""

    def __init__(self, follower: LogFollower) -> None:
        self._ending: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._events = follower.events(self._ending)

    async def take(self, count: int) -> list[int]:
        got = []
        async with asyncio.timeout(10):
            for _ in range(count):
                event = await anext(self._events)
                got.append(event.position)
        return got

    async def close(self) -> None:
        self._ending.set_result("the test is done")
        await self._events.aclose()


async def test_a_slow_follower_falls_behind_the_window_and_misses_nothing(
    database: Database, tail: LogTail, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    neighbour = uuid.uuid4()  # another tenant writing in between: the window fills with theirs
    reader = Reader(LogFollower(store, tail, tenant_id, 0))
    await _append(store, tenant_id, 0, 3)
    first = await reader.take(3)

    # Forty events while the reader does not read: the five-event window moves far past it.
    for n in range(3, 43):
        await _append(store, tenant_id, n, 1)
        await _append(store, neighbour, n, 2)
    [last_read] = [e for e in await store.read_log(tenant_id=tenant_id) if e.position == first[-1]]
    async with asyncio.timeout(10):
        while tail.since(last_read.key) is not None:  # until the window has moved past it
            await tail.wait(tail.generation)
    rest = await reader.take(40)
    await _append(store, neighbour, 43, 20)  # quiet for us: the reader must still rejoin
    await _append(store, tenant_id, 43, 2)
    live = await reader.take(2)
    await reader.close()

    delivered = first + rest + live
    stored = [e.position for e in await store.read_log(tenant_id=tenant_id, limit=1000)]
    assert delivered == stored  # every event once, in log order


async def test_caught_up_followers_read_from_the_tail_not_the_database(
    database: Database, tail: LogTail, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    other_tenant = uuid.uuid4()
    ours = [Reader(LogFollower(store, tail, tenant_id, 0)) for _ in range(50)]
    theirs = Reader(LogFollower(store, tail, other_tenant, None))  # from the present
    await _append(store, tenant_id, 0, 1)
    for reader in ours:
        await reader.take(1)  # every follower is now caught up with the tail
    watching = asyncio.create_task(theirs.take(1))  # waits on the tail, like ours
    await asyncio.sleep(0.1)

    follower_reads = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal follower_reads
        # A follower's database read is the tenant-filtered log query; the tail's is not.
        if "ORDER BY events.txid" in statement and "events.tenant_id =" in statement:
            follower_reads += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await _append(store, tenant_id, 1, 1)
        positions = {tuple(await reader.take(1)) for reader in ours}
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)

    assert len(positions) == 1  # all fifty received the same, single event
    assert follower_reads == 0
    await asyncio.sleep(0.5)
    assert not watching.done()  # another tenant's follower saw none of it
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    for reader in [*ours, theirs]:
        await reader.close()


async def test_the_tail_reads_only_while_someone_follows(
    database: Database, tail: LogTail, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    tail_reads = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal tail_reads
        if "ORDER BY events.txid" in statement and "events.tenant_id =" not in statement:
            tail_reads += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for n in range(3):
            await _append(store, tenant_id, n, 1)
        await asyncio.sleep(0.3)
        unfollowed = tail_reads
        reader = Reader(LogFollower(store, tail, tenant_id, None))  # from the present
        taking = asyncio.create_task(reader.take(1))
        await asyncio.sleep(0.2)  # the follower is waiting: the tail is awake again
        await _append(store, tenant_id, 3, 1)
        [position] = await taking
        followed = tail_reads
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    await reader.close()

    assert unfollowed == 0
    assert followed > 0
    assert position == (await store.read_log(tenant_id=tenant_id, limit=10))[-1].position
