"""Alembic, driven from code: the migrations ship inside the package.

Alembic's `env.py` runs its own event loop (`asyncio.run`), so `upgrade()` must be called where
no loop is running: from the CLI before the server starts, or from a worker thread
(pitfall 6 in docs/architecture.md). It is never called from the server's lifespan.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import ensure_sqlite_directory


def alembic_config(url: URL, event_partitions: int | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("workflow_engine.db") / "migrations"))
    # Passed as an object, not a string: a password with `%` would break ini interpolation.
    config.attributes["url"] = url
    config.attributes["event_partitions"] = event_partitions
    return config


def upgrade(url: URL, revision: str = "head", *, event_partitions: int | None = None) -> None:
    """Apply migrations up to `revision`, then bring `events` to `event_partitions` hash
    partitions (PostgreSQL; None leaves the layout as it is). Idempotent; safe on every start."""
    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url, event_partitions), revision)


def head_revisions(url: URL) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


async def pending_revisions(conn: AsyncConnection, url: URL, heads: set[str]) -> list[str]:
    """Revisions between the database's current one and `heads` (empty when up to date)."""

    def _pending(sync_conn: object) -> list[str]:
        context = MigrationContext.configure(sync_conn)  # type: ignore[arg-type]
        current = set(context.get_current_heads())
        if current == heads:
            return []
        script = ScriptDirectory.from_config(alembic_config(url))
        pending = []
        for rev in script.iterate_revisions(tuple(heads), tuple(current) or "base"):
            pending.append(rev.revision)
        return list(reversed(pending))

    return await conn.run_sync(_pending)
