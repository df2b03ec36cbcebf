"""Whether `migrate` would change anything, answered without Alembic.

A standalone worker migrates (when `AUTO_MIGRATE`) before it claims, in a forked child that
imports Alembic: about a third of a second of its start on a two-core machine, spent on every
restart although the schema is nearly always current already. Reading what the upgrade would
compare first lets a worker whose schema is current skip the child, while one that is behind
still migrates exactly as before.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from workflow_engine.db import Database
from workflow_engine.db.migrate import current_revisions, head_revisions
from workflow_engine.db.partitioning import event_partitions


async def needs_no_migration(db: Database, partitions: int) -> bool:
    """True when upgrading to head with `partitions` event partitions would be a no-op: the
    database records exactly the code's head revisions and, on PostgreSQL, `events` already
    has that layout (the upgrade converts it otherwise)."""

    def read(conn: Connection) -> bool:
        if current_revisions(conn) != head_revisions():
            return False
        return conn.dialect.name != "postgresql" or event_partitions(conn) == partitions

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
