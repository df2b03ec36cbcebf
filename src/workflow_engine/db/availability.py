"""Whether the database answers, as this process finds out, and what an outage looks like.

A request that fails because the database cannot be reached is answered 503 with
`Retry-After` (`api/guard.py`), not 500: the client can tell an outage from a bug, and knows
the request was not carried out. The process logs the first failure of an outage and the
first success after it — not one traceback per request or per worker poll.
"""

from __future__ import annotations

import socket
import time

import structlog
from sqlalchemy import exc as sa_exc

logger = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5
# Driver errors that mean the server cannot be reached or is starting or stopping.
_DRIVER_ERRORS = frozenset({
    "CannotConnectNowError", "ConnectionDoesNotExistError", "ConnectionFailureError",
    "InterfaceError", "InternalClientError", "PostgresConnectionError", "AdminShutdownError",
    "CrashShutdownError", "TooManyConnectionsError",
})  # fmt: skip


def unreachable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database could not be reached, as opposed
    to a statement it refused."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError | sa_exc.InterfaceError):
            return True  # no pooled connection came in time; the connection is unusable
        if isinstance(current, ConnectionError | socket.gaierror):
            return True  # refused, reset, or the host name does not resolve
        if type(current).__name__ in _DRIVER_ERRORS:
            return True
        current = current.__cause__ or current.__context__
    return False


class Availability:
    """The database's state as seen from this process: logs the edges, not every failure."""

    def __init__(self) -> None:
        self.up = True
        self._down_since = 0.0

    def failed(self, error: BaseException, where: str) -> None:
        if not self.up:
            return
        self.up = False
        self._down_since = time.monotonic()
        logger.warning("the database is unavailable; answering 503 until it is back",
                       where=where, error=type(error).__name__)  # fmt: skip

    def answered(self) -> None:
        if self.up:
            return
        self.up = True
        outage = round(time.monotonic() - self._down_since, 1)
        logger.info("the database is available again", unavailable_seconds=outage)


availability = Availability()
