"""The database: one async engine per process, and the two kinds of transaction we open.

`transaction()` is for writes and `read()` for reads. On SQLite a write transaction starts with
`BEGIN IMMEDIATE`: a deferred transaction that later writes fails at once with "database is
locked", ignoring the busy timeout (pitfall 1 in docs/architecture.md). Never await anything but
the database inside either: a transaction held across a network call blocks every other writer
on SQLite and pins a pooled connection on PostgreSQL (pitfall 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import String, bindparam, event, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from workflow_engine.db.availability import availability
from workflow_engine.db.sqlite_inline import InlineConnection, InlineSQLite

# How long a statement waits for another process's write lock (see `sqlite_inline`).
SQLITE_BUSY_TIMEOUT_MS = 5000
# The role tenant-scoped transactions run as on PostgreSQL (created by migration 0005).
TENANT_ROLE = "workflow_engine_api"
_WRITE_OPTION = "workflow_engine_write"
# Built once: a statement built per call costs SQLAlchemy more than its round trip.
_NOTIFY = select(func.pg_notify(bindparam("channel", type_=String()), ""))
# The policy-bound role and the tenant its policies compare with, both until the transaction
# ends, in one round trip: `set_config('role', ..., true)` is `SET LOCAL ROLE`, which takes no
# bind parameter where set_config does.
_CONFINE = select(
    func.set_config("role", TENANT_ROLE, True),
    func.set_config("app.tenant_id", bindparam("tenant", type_=String()), True),
)
_COMMIT_MARKS = "workflow_engine_commit_marks"
_AFTER_COMMIT = "workflow_engine_after_commit"
# The task holding a write connection. Tasks it starts inherit the value, but they are other
# tasks: they may wait for the writer to finish, it is only the writer itself that may not.
_WRITER: ContextVar[asyncio.Task[Any] | None] = ContextVar("workflow_engine_writer", default=None)


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Call `callback` once this transaction (a `Database.transaction()`) has committed, and
    never if it rolls back: for effects outside the database, like counting what it did."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


def mark_commit(conn: AsyncConnection, kind: str) -> None:
    """Note that this transaction did `kind` of work, for `Database.on_commit` listeners."""
    conn.info.setdefault(_COMMIT_MARKS, set()).add(kind)


async def announce(conn: AsyncConnection, kind: str, channel: str) -> None:
    """Tell whoever waits for `kind` of work once this transaction commits: listeners in
    this process (`mark_commit`) and, on PostgreSQL, other processes through NOTIFY on
    `channel`, which PostgreSQL delivers at commit and only then. Once per transaction: a
    second announcement would cost a round trip and say nothing new. (Not from inside a
    savepoint that may roll back: its NOTIFY would go with it.)"""
    marks = conn.info.setdefault(_COMMIT_MARKS, set())
    if kind in marks:
        return
    marks.add(kind)
    if conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY, {"channel": channel})


class Database:
    """Owns the connection pool. Created once per process by the lifecycle's database service."""

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self.row_level_security = False
        self.engine = _create_engine(url, pool_size, pool_timeout, connect_timeout)
        self._statement_reader: InlineConnection | None = None
        self._commit_listeners: dict[str, list[Callable[[], None]]] = {}
        # SQLite has one writer at a time. Queueing this process's writers here (first come,
        # first served, holding no pooled connection) leaves SQLite's busy timeout only the
        # other processes to arbitrate: its retry loop is unfair, and under a burst of
        # writers some would starve past the timeout and fail with "database is locked".
        self._write_turn: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back if it raises.
        Listeners of what it `mark_commit`-ed are called once it has committed."""
        async with self.write_connection() as conn:
            conn.info.pop(_COMMIT_MARKS, None)  # left by a rolled-back transaction
            conn.info.pop(_AFTER_COMMIT, None)
            async with conn.begin():
                yield conn
            availability.answered()
            self.committed(conn.info.pop(_COMMIT_MARKS, ()))
            for callback in conn.info.pop(_AFTER_COMMIT, ()):
                callback()

    def committed(self, kinds: Iterable[str]) -> None:
        """Tell this process's listeners that work of `kinds` committed: what a transaction
        does at its end, for work committed without one (a single autocommitted statement)."""
        for kind in kinds:
            for listener in self._commit_listeners.get(kind, ()):
                listener()

    def on_commit(self, kind: str, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit of a transaction in this process that marked
        `kind` (an in-process signal: other processes learn of it their own way)."""
        self._commit_listeners.setdefault(kind, []).append(listener)

    def remove_commit_listener(self, kind: str, listener: Callable[[], None]) -> None:
        self._commit_listeners.get(kind, []).remove(listener)

    @asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose transactions are write transactions; the caller begins and ends
        them (for the rare code that must hold one open across steps, like tests of
        concurrency). Prefer `transaction()`."""
        task = asyncio.current_task()
        if self.is_sqlite and task is not None and _WRITER.get() is task:
            # The lock is not re-entrant: waiting for it here would wait forever.
            raise RuntimeError("a write transaction is already open in this task (SQLite)")
        token = _WRITER.set(task)
        try:
            async with self._write_turn, self.engine.connect() as conn:
                await conn.execution_options(**{_WRITE_OPTION: True})
                yield conn
        finally:
            _WRITER.reset(token)

    @asynccontextmanager
    async def tenant_transaction(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncConnection]:
        """A write transaction confined to one tenant: on PostgreSQL with row-level security,
        the database itself hides every other tenant's rows, whatever the queries say."""
        async with self.transaction() as conn:
            await self._confine(conn, tenant_id)
            yield conn

    @asynccontextmanager
    async def tenant_read(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction confined to one tenant (see `tenant_transaction`)."""
        async with self.read() as conn:
            await self._confine(conn, tenant_id)
            yield conn

    async def _confine(self, conn: AsyncConnection, tenant_id: uuid.UUID) -> None:
        if not self.row_level_security:
            return
        await conn.execute(_CONFINE, {"tenant": str(tenant_id)})

    async def detect_row_level_security(self) -> bool:
        """Whether tenant transactions can run as the policy-bound role (migration 0005)."""
        if self.is_sqlite:
            return False
        async with self.engine.connect() as conn:
            exists = (
                await conn.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": TENANT_ROLE}
                )
            ).first()
            member = (
                exists is not None
                and (
                    await conn.execute(
                        text("SELECT pg_has_role(current_user, :role, 'MEMBER')"),
                        {"role": TENANT_ROLE},
                    )
                ).scalar_one()
            )
        self.row_level_security = bool(member)
        return self.row_level_security

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (deferred on SQLite, so it never waits for writers)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def ping(self, timeout: float) -> float:
        """Round-trip `SELECT 1` within `timeout` seconds; returns the latency in seconds."""
        started = time.perf_counter()
        async with asyncio.timeout(timeout), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started

    def pool_usage(self) -> tuple[int, int]:
        """(connections checked out, pool size)."""
        pool = self.engine.sync_engine.pool
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        size = getattr(pool, "size", lambda: 1)()
        return int(checked_out), int(size)

    def statement_reader(self) -> InlineConnection | None:
        """SQLite: this process's connection for reads of one statement, or None (another
        database, an in-memory one, or the reader is waiting for a lock right now).

        A pooled connection costs more to take and give back — two greenlet switches and a
        rollback — than a status read's statement takes to run. The statement runs on the
        event loop's thread and holds it until done, so one connection serves every reader of
        the process; it is read-only, and in WAL mode it never waits for the writer."""
        reader = self._statement_reader
        if reader is None:
            if not self.is_sqlite or self.url.database in (None, "", ":memory:"):
                return None
            dialect = self.engine.dialect
            args, kwargs = dialect.create_connect_args(self.engine.url)
            reader = dialect.loaded_dbapi.connect_inline(*args, **kwargs)
            reader.isolation_level = None  # autocommit: each statement its own snapshot
            reader.execute_now("PRAGMA query_only=ON")
            self._statement_reader = reader
        return None if reader.waiting else reader

    async def dispose(self) -> None:
        if self._statement_reader is not None:
            self._statement_reader.close_now()
            self._statement_reader = None
        await self.engine.dispose()


def _create_engine(
    url: URL, pool_size: int, pool_timeout: float, connect_timeout: float
) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, pool_size, pool_timeout)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        # Errors would otherwise quote bound values — event payloads — into logs and messages.
        hide_parameters=True,
        # A `connect_timeout` in the URL (mapped to asyncpg's `timeout`) takes precedence.
        connect_args={} if "timeout" in url.query else {"timeout": connect_timeout},
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # A database restart leaves dead connections in the pool. asyncpg notices a closed
        # socket as it happens, so asking it costs nothing, where SQLAlchemy's pre-ping costs
        # three round trips (BEGIN, a query, ROLLBACK) on every checkout. Raising this makes
        # the pool drop the connection and hand out a new one; a statement that still meets a
        # dead connection invalidates it, and the next checkout connects afresh.
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the connection was closed by the server")

    return engine


def ensure_sqlite_directory(url: URL) -> None:
    """SQLite creates the file but not its directory; both are made here, for the owner only.

    The file holds password hashes and key digests. SQLite would create it with the process's
    umask (world-readable, usually), and gives its `-wal` and `-shm` files the mode of the
    database file, so making the file first with mode 0600 keeps all three private."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # An existing database keeps the mode its owner gave it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _create_sqlite_engine(url: URL, pool_size: int, pool_timeout: float) -> AsyncEngine:
    ensure_sqlite_directory(url)
    engine = create_async_engine(
        url,
        module=InlineSQLite(SQLITE_BUSY_TIMEOUT_MS),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        hide_parameters=True,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (the driver would otherwise BEGIN lazily and
        # deferred), then set WAL so readers never block the writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
