"""Alembic, driven from code: the migrations ship inside the package.

Alembic's `env.py` runs its own event loop (`asyncio.run`), so `upgrade()` must be called where
no loop is running: from the CLI before the server starts, or from a worker thread
(pitfall 6 in docs/architecture.md). It is never called from the server's lifespan.

Alembic itself (about 8 MB once imported) is loaded only to migrate, or to list what a schema
that is behind lacks: a server checks that its schema is current by reading the scripts'
revision ids and `alembic_version` itself (docs/architecture.md, "What is loaded when").
"""

from __future__ import annotations

import ast
import functools
import re
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, column, select, table
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import ensure_sqlite_directory

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
ASSIGNMENT = re.compile(r"(?P<name>(down_)?revision)\s*(:[^=]*)?=")


def alembic_config(url: URL, event_partitions: int | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("workflow_engine.db") / "migrations"))
    # Passed as an object, not a string: a password with `%` would break ini interpolation.
    config.attributes["url"] = url
    config.attributes["event_partitions"] = event_partitions
    return config


def upgrade(url: URL, revision: str = "head", *, event_partitions: int | None = None) -> None:
    """Apply migrations up to `revision`, then bring `events` to `event_partitions` hash
    partitions (PostgreSQL; None leaves the layout as it is). Idempotent; safe on every start."""
    from alembic import command

    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url, event_partitions), revision)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The revisions no other one revises: where `upgrade head` leads. Read from the scripts'
    one-line `revision` and `down_revision` assignments, without running the scripts (they
    import Alembic); a unit test checks the answer against Alembic's own."""
    revised: dict[str, set[str]] = {}
    for script in (files("workflow_engine.db") / "migrations" / "versions").iterdir():
        if not script.name.endswith(".py"):
            continue
        found: dict[str, Any] = {}
        for line in script.read_text(encoding="utf-8").splitlines():
            if match := ASSIGNMENT.match(line):
                value = ast.parse(line[match.end() :].strip(), mode="eval")
                found[match["name"]] = ast.literal_eval(value)
        down = found.get("down_revision")
        revised[found["revision"]] = (
            set() if down is None else {down} if isinstance(down, str) else set(down)
        )
    return frozenset(revised.keys() - set().union(*revised.values()))


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the database is at, as Alembic records them (none before the first)."""
    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return set()
    return set(
        conn.execute(select(column("version_num")).select_from(table(VERSION_TABLE))).scalars()
    )


async def pending_revisions(conn: AsyncConnection, url: URL, heads: frozenset[str]) -> list[str]:
    """Revisions between the database's current one and `heads` (empty when up to date)."""

    def _pending(sync_conn: Connection) -> list[str]:
        current = current_revisions(sync_conn)
        if current == heads:
            return []
        from alembic.script import ScriptDirectory  # only for a schema that is behind

        script = ScriptDirectory.from_config(alembic_config(url))
        pending = []
        for rev in script.iterate_revisions(tuple(heads), tuple(current) or "base"):
            pending.append(rev.revision)
        return list(reversed(pending))

    return await conn.run_sync(_pending)
