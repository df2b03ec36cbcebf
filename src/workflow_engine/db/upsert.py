"""`INSERT ... ON CONFLICT` for whichever database the connection speaks.

PostgreSQL and SQLite spell the clause alike, but SQLAlchemy builds it with each dialect's
own `insert()`; callers get the right one here instead of branching on the dialect.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def upsert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An insert into `table` that accepts `on_conflict_do_update/do_nothing`."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
