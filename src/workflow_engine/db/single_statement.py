"""One read statement, sent on the driver's own connection with no transaction around it.

A read that is a single statement needs no BEGIN and COMMIT: on both databases a statement
outside a transaction is a transaction of its own, with one snapshot. On PostgreSQL the
statement goes through asyncpg directly (as the engine's transitions do), so the call is one
round trip and no SQLAlchemy statement is built, compiled or processed; with no transaction
begun, giving the connection back costs no ROLLBACK either. On SQLite it runs on the
process's read-only statement reader (`Database.statement_reader`), on the event loop's thread
(`sqlite_inline`), in autocommit.

Values are given once, as Python values; each database gets them the way SQLAlchemy's column
types store them (on SQLite: UUIDs as 32 hex digits, times as naive UTC text). `confine` is
always passed: whether tenant work runs as the policy-bound role (`Database.tenant_read`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.util import greenlet_spawn

from workflow_engine.db.database import Database
from workflow_engine.db.sqlite_inline import InlineConnection

K = TypeVar("K")


@dataclass(frozen=True)
class ReadStatement:
    """The same read on each database: a call of a function of migration 0017 with
    positional parameters named by `params` in order, and SQLite SQL with `:name` ones."""

    params: tuple[str, ...]
    postgresql: str
    sqlite: str


async def fetch_row(db: Database, statement: ReadStatement, **values: Any) -> tuple[Any, ...]:
    """The statement's one row (each of these reads answers with exactly one)."""
    values["confine"] = db.row_level_security
    reader = db.statement_reader()
    if reader is not None:
        return tuple(await reader.fetchone(statement.sqlite, _sqlite_values(values)))
    # The pooled connection itself: SQLAlchemy's connection around it costs more to open
    # and close than the statement takes.
    connection = await db.engine.raw_connection()
    try:
        if db.is_sqlite:
            inline: InlineConnection = connection.driver_connection  # type: ignore[assignment]
            row = await inline.fetchone(statement.sqlite, _sqlite_values(values))
        else:
            args = (values[name] for name in statement.params)
            row = await connection.driver_connection.fetchrow(statement.postgresql, *args)  # type: ignore[union-attr]
    except BaseException:
        # Cancelled or failed mid-statement, the connection's state is unknown: drop it.
        await greenlet_spawn(connection.invalidate)
        raise
    finally:
        await greenlet_spawn(connection.close)
    return tuple(row)


def _sqlite_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _sqlite_value(value) for name, value in values.items()}


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


@dataclass(frozen=True)
class JsonPage(Generic[K]):
    """A page as the database rendered it: its items as a JSON array, and the key of its last
    item when another page follows (what the next cursor names)."""

    items: str
    next_key: K | None
