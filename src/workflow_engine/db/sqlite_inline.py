"""SQLite statements run on the event loop's thread instead of hopping to a driver thread.

aiosqlite gives each connection a thread and sends every call — execute, fetch, commit — over
a queue to it and back. On a small machine each hop costs more than the work: a `SELECT 1`
takes about 1.5 ms through SQLAlchemy's aiosqlite adapter and 2 µs in plain `sqlite3`, so a
step's dozen statements cost the engine 15 to 20 ms of hand-offs. SQLite is a library working on
a local file; with WAL and `synchronous=NORMAL` a statement of ours takes microseconds and a
commit does not wait for the disk. So this driver runs statements inline and keeps a thread
for the one thing that can take long: waiting for another process's write lock. Connections
run with a busy timeout of zero; a statement refused with SQLITE_BUSY (which SQLite guarantees
did nothing) runs again in a thread with the configured timeout, so a migration or a CLI
command holding the lock never blocks the event loop. Within the process, writers queue in
`Database` before they begin, so the inline path is the one taken.

What this costs: a statement that scans a lot (a replay reading the log, a large page) holds
the event loop while it runs, as CPU work of the same size in Python would. The queries on the
request path are bounded by their indexes and limits.

It plugs into SQLAlchemy's aiosqlite dialect as its DBAPI module (`create_async_engine(...,
module=...)`): the dialect, its SQL and its type handling stay SQLAlchemy's own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)

T = TypeVar("T")


class InlineConnection:
    """An `sqlite3` connection with the awaitable surface SQLAlchemy's adapter expects."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
        self._conn = connection
        # aiosqlite's name for "the open connection, or None once closed": the adapter skips
        # commit and rollback on a closed one.
        self._connection: sqlite3.Connection | None = connection
        self._busy_timeout_ms = busy_timeout_ms
        # True while a statement waits for another process's lock in a thread: the one time
        # another caller on this thread could reach the connection mid-statement.
        self.waiting = False
        connection.execute("PRAGMA busy_timeout=0")

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._conn.isolation_level = value

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        await self.run(self._conn.rollback)

    async def close(self) -> None:
        self.close_now()

    def execute_now(self, sql: str) -> None:
        """A setting (`PRAGMA`) applied at once."""
        self._conn.execute(sql)

    def close_now(self) -> None:
        self._connection = None
        self._conn.close()

    def in_write_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` with the `sqlite3` connection itself, for statements sent without
        SQLAlchemy, inside a write transaction the caller opened (`BEGIN IMMEDIATE` holds the
        write lock, so none of them can meet another writer's lock)."""
        if not self._conn.in_transaction:
            raise RuntimeError("in_write_transaction needs an open write transaction")
        return work(self._conn)

    async def fetchone(self, sql: str, parameters: Mapping[str, Any]) -> Any:
        """The first row of one statement sent without SQLAlchemy. Outside a transaction
        (autocommit) the statement is a transaction of its own."""
        return await self.run(lambda: self._conn.execute(sql, parameters).fetchone())

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` here; if another process holds the lock, again in a thread that
        waits for it up to the busy timeout."""
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
        return await asyncio.to_thread(self._waiting, call, *args)

    def _waiting(self, call: Callable[..., T], *args: Any) -> T:
        self.waiting = True
        self._conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        try:
            return call(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")
            self.waiting = False


class InlineCursor:
    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, operation: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        await self._connection.run(self._cursor.execute, operation, parameters)
        return self

    async def executemany(self, operation: str, rows: Sequence[Sequence[Any]]) -> InlineCursor:
        await self._connection.run(self._cursor.executemany, operation, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None


class _AdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level  # type: ignore[no-any-return]

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection.isolation_level = value

    async def _terminate_graceful_close(self) -> None:
        await self._connection.close()

    def _terminate_force_close(self) -> None:
        self._connection.close_now()


class InlineSQLite(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to hand SQLAlchemy's aiosqlite dialect."""

    def __init__(self, busy_timeout_ms: int) -> None:
        import aiosqlite  # the dialect reads its exception names and version from it

        super().__init__(aiosqlite, sqlite3)
        self._busy_timeout_ms = busy_timeout_ms

    def connect(self, *args: Any, **kwargs: Any) -> _AdaptedConnection:
        return _AdaptedConnection(self, self.connect_inline(*args, **kwargs))  # type: ignore[arg-type]  # aiosqlite-shaped

    def connect_inline(self, *args: Any, **kwargs: Any) -> InlineConnection:
        """A connection of our own, outside SQLAlchemy (`connect`'s arguments)."""
        kwargs.pop("async_creator_fn", None)
        # The busy-lock fallback runs a statement in a worker thread; the pool still hands a
        # connection to one user at a time.
        kwargs["check_same_thread"] = False
        return InlineConnection(sqlite3.connect(*args, **kwargs), self._busy_timeout_ms)
