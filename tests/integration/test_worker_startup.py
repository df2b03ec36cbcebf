"""A standalone worker migrates before it claims (with `AUTO_MIGRATE`) only when migrating would
change something: a schema behind the code, or an `events` layout other than EVENT_PARTITIONS.
A current one is left alone, without the child process that imports Alembic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.script import ScriptDirectory

from tests.integration.test_lazy_loading import run_worker
from workflow_engine.bootstrap.schema_state import needs_no_migration
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import alembic_config, head_revisions, upgrade
from workflow_engine.db.partitioning import event_partitions


async def test_a_current_schema_needs_no_migration(database: Database) -> None:
    assert await needs_no_migration(database, 1)


async def test_an_empty_schema_or_one_revision_behind_needs_one(tmp_path: Path) -> None:
    url = to_async_url(f"sqlite:///{tmp_path / 'behind.db'}")
    [head] = head_revisions()
    previous = ScriptDirectory.from_config(alembic_config(url)).get_revision(head).down_revision
    assert isinstance(previous, str)
    db = Database(url)
    try:
        assert not await needs_no_migration(db, 1)
        await asyncio.to_thread(upgrade, url, previous)
        assert not await needs_no_migration(db, 1)
        await asyncio.to_thread(upgrade, url)
        assert await needs_no_migration(db, 1)
    finally:
        await db.dispose()


def test_a_worker_migrates_an_empty_database_before_it_starts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    status, output = run_worker({"DATABASE_URL": url, "DATA_DIR": str(tmp_path)})
    assert status == 0, output

    async def migrated() -> bool:
        db = Database(to_async_url(url))
        try:
            return await needs_no_migration(db, 1)
        finally:
            await db.dispose()

    assert asyncio.run(migrated())


def test_a_worker_brings_events_to_event_partitions_on_a_current_schema(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    url = to_async_url(fresh_postgres_url)
    upgrade(url)  # at head, `events` one plain table

    async def state(partitions: int) -> tuple[bool, int]:
        db = Database(url)
        try:
            current = await needs_no_migration(db, partitions)
            async with db.engine.connect() as conn:
                return current, await conn.run_sync(event_partitions)
        finally:
            await db.dispose()

    assert asyncio.run(state(3)) == (False, 1)
    env = {"DATABASE_URL": fresh_postgres_url, "DATA_DIR": str(tmp_path), "EVENT_PARTITIONS": "3"}
    status, output = run_worker(env)
    assert status == 0, output
    assert asyncio.run(state(3)) == (True, 3)
