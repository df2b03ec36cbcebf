"""SQLite statements run on the event loop (`db/sqlite_inline.py`): a write that must wait for
another process's lock waits in a thread, and the loop keeps serving meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from workflow_engine.config import to_async_url
from workflow_engine.db import Database


async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    db = Database(to_async_url(f"sqlite:///{path}"))
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE notes (body TEXT NOT NULL)"))

        other = sqlite3.connect(path, isolation_level=None)  # another process's connection
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO notes VALUES ('theirs')")

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO notes VALUES ('ours')"))

        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        waited = writing.done()
        ticks_while_waiting = ticks
        other.execute("COMMIT")
        other.close()
        async with asyncio.timeout(5):
            await writing
        ticker.cancel()

        async with db.read() as conn:
            rows = [row.body for row in await conn.execute(text("SELECT body FROM notes"))]
    finally:
        await db.dispose()

    assert not waited  # it waited for the lock instead of failing with "database is locked"
    assert ticks_while_waiting >= 10  # the loop ran meanwhile (about 50 ticks in 0.5 s)
    assert rows == ["theirs", "ours"]


async def test_statements_fail_as_sqlite_says_when_they_are_wrong(tmp_path: Path) -> None:
    db = Database(to_async_url(f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        failed = None
        try:
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))
                await conn.execute(text("INSERT INTO t VALUES (1)"))
        except Exception as exc:
            failed = exc
        async with db.read() as conn:
            values = [row.v for row in await conn.execute(text("SELECT v FROM t"))]
    finally:
        await db.dispose()

    assert failed is not None
    assert "UNIQUE constraint failed" in str(failed)
    assert values == [1]  # the failed transaction left nothing behind
