"""One leader among server processes for a piece of background work.

On PostgreSQL the leader holds a session-level advisory lock on a dedicated connection
outside the pool (the pool's connections come and go; the lock must not). When the leader's
process dies its connection closes, the database releases the lock, and the next process to
ask takes it over. A leader whose connection breaks stops leading at its next `lead()`.

On SQLite there is one server process per database file (`serve --workers` is refused there),
so that process always leads.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import structlog

from workflow_engine.db.database import Database
from workflow_engine.db.listener import connect_arguments

logger = structlog.get_logger(__name__)

STATEMENT_TIMEOUT = 5.0
# A leader whose host vanishes (no FIN) would keep the lock until the operating system's
# keepalive gives up, two hours by default: the server probes the connection every few
# seconds instead and drops it, and the lock, within about half a minute.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
              "tcp_keepalives_count": "3"}  # fmt: skip


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name` (Python's `hash` is per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership:
    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self.name = name
        self._key = lock_key(f"workflow_engine:{name}")
        self._connection: Any = None
        self.leading = db.is_sqlite

    async def lead(self) -> bool:
        """Whether this process leads now: confirms a held lock, or tries to take it."""
        if self._db.is_sqlite:
            return True
        import asyncpg

        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(
                    **connect_arguments(self._db.url), server_settings=KEEPALIVES
                )
                self.leading = False
            if self.leading:
                await self._connection.execute("SELECT 1", timeout=STATEMENT_TIMEOUT)
            else:
                self.leading = bool(
                    await self._connection.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self._key, timeout=STATEMENT_TIMEOUT
                    )
                )
                if self.leading:
                    logger.info("took the lead", work=self.name)
        except Exception as exc:  # the database is away: nobody here leads until it is back
            if self.leading:
                logger.warning("lost the lead", work=self.name, error=type(exc).__name__)
            await self._disconnect()
        return self.leading

    async def resign(self) -> None:
        await self._disconnect()

    async def _disconnect(self) -> None:
        self.leading = self._db.is_sqlite
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close(timeout=STATEMENT_TIMEOUT)
