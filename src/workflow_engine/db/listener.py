"""PostgreSQL LISTEN on a dedicated connection outside the pool, which would drop the LISTEN with
a returned connection (pitfall 5 in docs/architecture.md).

`listen(db, channel, on_notify)` runs until cancelled: it connects, listens, calls
`on_notify()` for every notification and once after each (re)connection — notifications sent
while it was away are lost, so the caller catches up then — and reconnects with backoff after
a database restart or a dropped network (a cheap query every few seconds notices a connection
that died silently).
"""

from __future__ import annotations

import asyncio
import contextlib
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
    import asyncpg

    state = state or Listening()
    url = db.url
    delay = 0.5
    while True:
        connection: Any = None
        try:
            connection = await asyncpg.connect(**connect_arguments(url))
            await connection.add_listener(channel, lambda *_args: on_notify())
            state.connected = True
            delay = 0.5
            on_notify()  # catch up: notifications sent while away are lost
            await _until_closed(connection)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("listener disconnected", channel=channel, error=type(exc).__name__)
        finally:
            state.connected = False
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RECONNECT_MAX)


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
