"""PostgreSQL LISTEN on a dedicated connection outside the pool, which would drop the LISTEN with
a returned connection (pitfall 5 in docs/architecture.md) — one connection per process for
every channel.

`listen(db, channel, on_notify)` runs until cancelled: while it runs, `on_notify()` is called
for every notification on `channel`, and once after each (re)connection — notifications sent
while the connection was away are lost, so the caller catches up then. (`listen_payloads`
hands on each notification's payload instead: the run deltas' channel, `engine/deltas.py`.)
The process's channels share one connection (the event log's, the task queue's, the
credentials', the deltas'), which reconnects with backoff after a database restart or a
dropped network (a cheap query every few seconds notices a connection that died silently) and
is closed when nobody listens any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.engine import URL

from workflow_engine.db.database import Database

logger = structlog.get_logger(__name__)

_RECONNECT_MAX = 10.0


class Listening:
    """Whether the listener is connected right now (for health reports)."""

    def __init__(self) -> None:
        self.connected = False


async def listen(
    db: Database,
    channel: str,
    on_notify: Callable[[], None],
    state: Listening | None = None,
) -> None:
    hub = _hubs.get(db)
    if hub is None:
        hub = _hubs[db] = _Hub(db)
    try:
        # Inside the `try`: a listener cancelled while it subscribes (an app stopped right
        # after it started) must still leave, or the connection would outlive everyone.
        await hub.subscribe(channel, on_notify, state)
        await asyncio.get_running_loop().create_future()  # until cancelled
    finally:
        await hub.unsubscribe(channel, on_notify, state)


async def listen_payloads(db: Database, channel: str, on_payload: Callable[[str], None]) -> None:
    """`listen` for a channel whose notifications carry data: `on_payload(payload)` for each,
    and nothing at a reconnection (what was sent meanwhile is gone, and no log holds it)."""
    await listen(db, channel, _Payloads(on_payload))


class _Payloads:
    """A subscriber that takes each notification's payload."""

    def __init__(self, on_payload: Callable[[str], None]) -> None:
        self.on_payload = on_payload

    def __call__(self) -> None:
        return None  # a (re)connection: nothing to catch up from


class _Hub:
    """The process's LISTEN connection and who listens to which channel on it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._states: list[Listening] = []
        self._connection: Any = None
        self._listened: set[str] = set()  # the channels LISTENed to on this connection
        self._task: asyncio.Task[None] | None = None

    async def subscribe(
        self, channel: str, on_notify: Callable[[], None], state: Listening | None
    ) -> None:
        self._subscribers.setdefault(channel, []).append(on_notify)
        if state is not None:
            self._states.append(state)
            state.connected = self._connection is not None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="database-listener")
        elif self._connection is not None:
            await self._listen(self._connection, channel)
            on_notify()  # a late subscriber catches up like a reconnected one

    async def unsubscribe(
        self, channel: str, on_notify: Callable[[], None], state: Listening | None
    ) -> None:
        callbacks = self._subscribers.get(channel, [])
        if on_notify in callbacks:
            callbacks.remove(on_notify)
        if not callbacks:
            self._subscribers.pop(channel, None)
        if state in self._states:
            self._states.remove(state)
        if not self._subscribers and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, connection: Any, channel: str) -> None:
        if channel in self._listened:
            return
        self._listened.add(channel)
        await connection.add_listener(channel, self._dispatch)

    def _dispatch(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for on_notify in list(self._subscribers.get(channel, ())):
            if isinstance(on_notify, _Payloads):
                on_notify.on_payload(payload)
            else:
                on_notify()

    def _set_connected(self, connected: bool) -> None:
        for state in self._states:
            state.connected = connected

    async def _run(self) -> None:
        import asyncpg

        delay = 0.5
        while True:
            connection: Any = None
            try:
                connection = await asyncpg.connect(**connect_arguments(self._db.url))
                self._connection, self._listened = connection, set()
                for channel in list(self._subscribers):
                    await self._listen(connection, channel)
                self._set_connected(True)
                delay = 0.5
                for callbacks in list(self._subscribers.values()):
                    for on_notify in list(callbacks):
                        on_notify()  # catch up: notifications sent while away are lost
                await _until_closed(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("listener disconnected", error=type(exc).__name__)
            finally:
                self._connection = None
                self._set_connected(False)
                if connection is not None and not connection.is_closed():
                    await connection.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)


_hubs: weakref.WeakKeyDictionary[Database, _Hub] = weakref.WeakKeyDictionary()


def connect_arguments(url: URL) -> dict[str, Any]:
    """asyncpg's arguments for the pool's URL, its `ssl` mode and `timeout` included (they
    come from `sslmode` and `connect_timeout` in DATABASE_URL), so the listener connects as
    securely as the pool does."""
    arguments: dict[str, Any] = {
        "host": url.host, "port": url.port or 5432, "user": url.username,
        "password": url.password, "database": url.database, "timeout": 10.0,
    }  # fmt: skip
    ssl, timeout = url.query.get("ssl"), url.query.get("timeout")
    if isinstance(ssl, str):
        arguments["ssl"] = ssl
    if isinstance(timeout, str):
        arguments["timeout"] = float(timeout)
    return arguments


async def _until_closed(connection: Any) -> None:
    closed = asyncio.Event()
    connection.add_termination_listener(lambda _connection: closed.set())
    while not closed.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), 5.0)
        if not closed.is_set():
            await connection.execute("SELECT 1", timeout=5)  # a half-open socket fails here
