"""Server-sent event responses of our own: written by the request's task or the tail's, and
watched by one more task.

The streams used sse-starlette's `EventSourceResponse` until a thousand subscribers of one
aggregate showed what it costs per message: an anyio cancel scope around every send (its send
timeout), a task group of four tasks per connection, and a thousand tasks woken to send one
event each — most of the server's CPU per delivered event (docs/benchmarks.md). Here a stream
has an `Outlet` that two tasks write to:

- the request's own task, in which the producer writes (`Outlet.write`) as soon as it has
  something, with nothing around the send, waiting as long as the client needs;
- the tail's task (`events/tail.py`), which offers a caught-up follower's next events as it
  reads them (`Outlet.offer`), one pass over every such stream: a send that completes at once
  is done, one that would have to wait for its client is left for the request's task to
  finish (`api/eager.py`), so one slow client never holds the others up.

A watcher task per stream waits on `receive()` for the client to go away, and wakes every
`PING_SECONDS` to send a comment (proxies close connections that stay silent) — or, when a
send has been waiting on the client for `SEND_TIMEOUT`, to give the stream up.

The producer is handed `ending`, a future that resolves, with the reason, when the stream must
end: the client went away, the server is stopping (`stop_streams`, called by the signal
handler), or the producer's caller decided so (a credential let go, `api/streams.py`). The
producer then returns and the response ends cleanly. A client that does not read delays only
its own stream: its sends wait (uvicorn's flow control), the tail hands its producer back to
its own task, and after `SEND_TIMEOUT` (looked at with the pings: within 30 to 45 s) the
connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from workflow_engine.api.eager import Rest, start
from workflow_engine.events import sse_format

logger = structlog.get_logger(__name__)

PING_SECONDS = 15.0
SEND_TIMEOUT = 30.0

Ending = asyncio.Future[str]  # resolves, with the reason, when the stream must end
#: Writes the stream's messages to the outlet; must return once `ending` is done.
Producer = Callable[[Ending, "Outlet"], Awaitable[None]]

CLIENT_GONE = "the client went away"
SERVER_STOPPING = "the server is stopping"
CLIENT_STALLED = "the client stopped reading"

_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each message on as it comes
    (b"content-type", b"text/event-stream; charset=utf-8"),
]
_LAST: Message = {"type": "http.response.body", "body": b"", "more_body": False}

_open_streams: set[Ending] = set()
_stopping: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


class EventStreamResponse(Response):
    # No class-level `media_type`: the routes document `text/event-stream` themselves (FastAPI
    # would add a `string` schema to it), and the headers below name it for the client.

    def __init__(
        self,
        produce: Producer,
        *,
        status_code: int = 200,  # FastAPI reads its default for the OpenAPI document
        ping: float = PING_SECONDS,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        # Not `Response.__init__`: it renders a body, and a stream has none.
        self.status_code = status_code
        self.background = None
        self.raw_headers = list(_HEADERS)
        self._produce = produce
        self._ping = ping
        self._send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        ending: Ending = loop.create_future()
        task = asyncio.current_task()
        assert task is not None  # an ASGI app always runs in a task
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        outlet = Outlet(send)
        watcher = loop.create_task(self._watch(receive, outlet, ending, task), name="sse-watch")
        try:
            with _open(ending):
                await self._produce(ending, outlet)
            outlet.discard()  # a send left over: the client resumes before it (Last-Event-ID)
            await outlet.finish()
        except asyncio.CancelledError:
            if not outlet.given_up:
                raise
            # Cancelled by our watcher, not by the server: the client stopped reading, and the
            # only way to let a connection go that cannot take the end of its response.
            task.uncancel()
            logger.warning("dropped a stream whose client stopped reading", path=scope["path"])
            return
        finally:
            watcher.cancel()
            outlet.discard()
        if self.background is not None:
            await self.background()

    async def _watch(
        self, receive: Receive, outlet: Outlet, ending: Ending, task: asyncio.Task[None]
    ) -> None:
        """Ends the stream when the client goes away, pings it every `PING_SECONDS`, and gives
        it up when a send has not moved for `SEND_TIMEOUT`."""
        loop = asyncio.get_running_loop()
        stuck: tuple[int, float] | None = None  # (sends completed, when first seen waiting)
        while True:
            try:
                async with asyncio.timeout(self._ping):
                    message = await receive()
            except TimeoutError:
                if outlet.in_flight or outlet.pending:
                    now = loop.time()
                    if stuck is None or stuck[0] != outlet.completed:
                        stuck = (outlet.completed, now)
                    elif now - stuck[1] >= self._send_timeout:
                        _give_up(outlet, ending, task)
                        return
                    continue
                stuck = None
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await outlet.ping()
                except TimeoutError:
                    _give_up(outlet, ending, task)
                    return
                continue
            if message["type"] == "http.disconnect":
                end(ending, CLIENT_GONE)
                return


class Outlet:
    """One stream's writing side. The request's task writes with `write`, which waits for the
    client as long as it must; the tail's task offers with `offer`, which never waits. Sends
    are counted for the watcher: it pings only a stream with none under way or left over, and
    tells a slow client (a send that completes late) from a stalled one (none completes)."""

    __slots__ = ("_context", "_pending", "_send", "completed", "given_up", "in_flight")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._context = contextvars.copy_context()  # the request's, for sends the tail starts
        self._pending: Rest | Coroutine[Any, Any, None] | None = None
        self.in_flight = 0
        self.completed = 0
        self.given_up = False

    @property
    def pending(self) -> bool:
        """Whether an offered send is left for the request's task (`flush`)."""
        return self._pending is not None

    async def write(self, chunk: bytes) -> None:
        """Sends `chunk` (after any send left over), waiting for the client if it must."""
        if self._pending is not None:
            await self.flush()
        await self._body(chunk)

    def offer(self, chunk: bytes) -> bool:
        """Sends `chunk` if that takes no waiting: True. Otherwise the send is left for the
        request's task to finish (`flush`): False. Only with nothing left over already."""
        assert self._pending is None, "offered to an outlet with a send left over"
        if self.in_flight:  # a ping waits for the client: this send goes after it
            self._pending = self._body(chunk)
            return False
        self._pending = start(self._body(chunk), self._context)
        return self._pending is None

    async def flush(self) -> None:
        """Finishes the send `offer` left, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def ping(self) -> None:
        await self._body(_ping())

    async def finish(self) -> None:
        """Ends the response: the last, empty chunk."""
        await self._counted(_LAST)

    def discard(self) -> None:
        """Drops the send left over, if any (the stream ends without it)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()

    async def _body(self, chunk: bytes) -> None:
        # `_counted` inlined: this is the one call per message the tail's task makes.
        self.in_flight += 1
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self.in_flight -= 1
        self.completed += 1

    async def _counted(self, message: Message) -> None:
        self.in_flight += 1
        try:
            await self._send(message)
        finally:
            self.in_flight -= 1
        self.completed += 1


def _ping() -> bytes:
    return sse_format.comment(f"ping - {datetime.now(UTC)}")


def _give_up(outlet: Outlet, ending: Ending, task: asyncio.Task[None]) -> None:
    outlet.given_up = True
    end(ending, CLIENT_STALLED)
    task.cancel()  # its send waits on a client that does not read: nothing else ends it


def end(ending: Ending, reason: str) -> None:
    """Ends the stream (its producer returns) unless it is ending already."""
    if not ending.done():
        ending.set_result(reason)


@contextlib.contextmanager
def _open(ending: Ending) -> Iterator[None]:
    """Registers a stream for `stop_streams`; one opened after it was called ends at once."""
    if ending.get_loop() in _stopping:
        end(ending, SERVER_STOPPING)
    _open_streams.add(ending)
    try:
        yield
    finally:
        _open_streams.discard(ending)


def stop_streams() -> None:
    """Ends every stream open on the running loop, and those opened on it from now on: the
    server is stopping, and uvicorn waits for open responses before it stops its services.
    Safe in a signal handler: the streams are ended by a callback on their loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # the signal came while no loop runs: no stream is open
        return
    loop.call_soon_threadsafe(_stop_on, loop)


def _stop_on(loop: asyncio.AbstractEventLoop) -> None:
    _stopping.add(loop)
    for ending in list(_open_streams):
        if ending.get_loop() is loop:
            end(ending, SERVER_STOPPING)
