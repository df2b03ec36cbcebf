"""`INSERT ... ON CONFLICT` for whichever database the connection speaks.

PostgreSQL and SQLite spell the clause alike, but SQLAlchemy builds it with each dialect's
own `insert()`; callers get the right one here instead of branching on the dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def upsert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An insert into `table` that accepts `on_conflict_do_update/do_nothing`."""
    # Each dialect imported when its database is used: PostgreSQL's is about 2 MB that a
    # server on SQLite has no use for (docs/architecture.md, "What is loaded when").
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
