"""Alembic environment: async engine, URL handed over by `workflow_engine.db.migrate`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from workflow_engine.db.partitioning import apply_event_partitions
from workflow_engine.db.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        # Not a revision: the layout follows EVENT_PARTITIONS whenever it changes.
        partitions = config.attributes.get("event_partitions")
        if partitions is not None:
            apply_event_partitions(connection, partitions)


async def _run_async() -> None:
    engine = create_async_engine(config.attributes["url"], poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `workflow-engine migrate`")
asyncio.run(_run_async())
