"""Server-sent events, read as the server writes them (`events/sse_format.py`), and what a
stream that broke off needs to go on where it stopped.

`Decoder` turns lines into messages as the HTML standard reads them: `data` lines joined with
line breaks, `id` kept, comments (the server's pings) skipped. `Resumption` remembers the last
id received — it goes back as `Last-Event-ID`, after which the server continues exactly — and
decides how long to wait before the next attempt, and when to give up. `Client` and
`AsyncClient` run the loop around them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from workflow_engine.client.errors import Unreachable, WorkflowEngineError

#: After a disconnect, attempts to reconnect go on this long (the server may be restarting).
RECONNECT_FOR = 60.0
FIRST_DELAY = 0.1
MAX_DELAY = 2.0


@dataclass(frozen=True)
class ServerSentEvent:
    event: str  # "message" when the server named none
    data: str
    id: str | None = None

    def json(self) -> object:
        return json.loads(self.data)


class Decoder:
    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line, without its line break; a message when the line ends one."""
        if not line:
            if not self._data:  # nothing to dispatch (e.g. only a comment before)
                self._event = self._id = None
                return None
            message = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            self._data, self._event, self._id = [], None, None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None


class Disconnected(Exception):
    """The stream ended before the server said it was over (the server stopped, a proxy cut
    it): reconnect and resume."""


class CredentialClosed(Exception):
    """The server ended the stream because its credential ended (`event: closed`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def closed_detail(message: ServerSentEvent) -> str:
    try:
        document = message.json()
    except ValueError:
        return message.data
    if isinstance(document, dict):
        return str(document.get("detail", message.data))
    return message.data


class Resumption:
    """Where a stream is, and whether to try again after it broke."""

    def __init__(self, last_event_id: str | None = None, reconnect_for: float = RECONNECT_FOR):
        self.last_event_id = last_event_id
        self.reconnect_for = reconnect_for
        self.connected_once = False
        self._failing_since: float | None = None
        self._delay = FIRST_DELAY

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.last_event_id} if self.last_event_id is not None else {}

    def connected(self) -> None:
        self.connected_once = True
        self._failing_since = None
        self._delay = FIRST_DELAY

    def received(self, message: ServerSentEvent) -> None:
        if message.id is not None:
            self.last_event_id = message.id

    def retry_after(self, error: Exception) -> float:
        """Seconds to wait before reconnecting after `error`; raises when it is time to stop.
        Only a stream that was open once is resumed: a first connection that fails is the
        caller's error at once (a wrong URL should not hang for a minute)."""
        if not self.connected_once:
            raise _as_client_error(error)
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > self.reconnect_for:
            raise _as_client_error(error)
        delay, self._delay = self._delay, min(self._delay * 2, MAX_DELAY)
        return delay


def _as_client_error(error: Exception) -> Exception:
    if isinstance(error, WorkflowEngineError):
        return error
    return Unreachable(f"the stream broke off and could not be resumed: {error}")


def retryable(error: WorkflowEngineError) -> bool:
    """An answer to a reconnect that is worth waiting out: the server is up but not ready
    (503 while its database is away, 502/504 from a proxy in front of a restart)."""
    return error.status in (502, 503, 504)
