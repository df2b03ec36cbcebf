"""Text of running steps as it is written: streamed LLM tokens on a run's live streams.

A node that streams (`llm.chat` with `stream: true`) hands each piece of text to its context's
publisher (`NodeContext.deltas`); the run's log stream (`/logs?follow=true`) and the events
stream show them as `delta` messages while the step runs. Deltas are not events: nothing of
them is stored, they have no `id` (a client resuming with `Last-Event-ID` gets the stored
events after it, not the deltas it missed), and only the step's output, stored when it
completes, holds the whole text. A stream that was not open while a step ran never sees its
deltas.

- **Batching**: a publisher gathers the pieces of `FLUSH_SECONDS` (50 ms) into one delta, so a
  fast model costs twenty deltas a second per step, not one per token. A delta longer than
  `PIECE_CHARS` is sent as several, each with its own `seq`: the deltas of one step attempt
  are numbered 1, 2, 3... and a client that sees a gap knows it missed some.
- **Across processes** (PostgreSQL): each delta also goes out as a NOTIFY on
  `workflow_engine_deltas` (its payload well under PostgreSQL's 8000 bytes), which every
  process with an open stream LISTENs to on its one listener connection (`db/listener.py`),
  so a standalone `workflow-engine worker` reaches the API's streams. A process delivers its
  own deltas directly and skips their notifications. The publisher sends its last delta
  before the node returns, so a stream shows every delta before the step's completion.
- **SQLite**: one process writes, so the embedded worker delivers to the streams in its own
  process; deltas of a `workflow-engine worker` on SQLite reach no stream.
- **Slow clients**: each stream has a queue of at most `QUEUE_SIZE` deltas; a client that
  does not keep up loses the deltas beyond it (counted in `stream_deltas_dropped_total`),
  and never holds up the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from workflow_engine.events import sse_format
from workflow_engine.events.storable import storable_text
from workflow_engine.observability import metrics

if TYPE_CHECKING:
    from workflow_engine.db import Database

logger = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "workflow_engine_deltas"
FLUSH_SECONDS = 0.05
PIECE_CHARS = 1000  # at most 6 bytes a character in JSON: a payload stays under 8000 bytes
QUEUE_SIZE = 256


class DeltaPublisher(Protocol):
    """What a node streams text through (`NodeContext.deltas`)."""

    async def publish(self, text: str) -> None:
        """Hands on the next piece of the step's text (a `DeltaCallback`)."""

    async def close(self) -> None:
        """Sends what is left; called by the worker when the node has returned."""


class NoDeltas:
    """The publisher of a context no stream can see (a node called outside a worker)."""

    async def publish(self, text: str) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class Delta:
    tenant_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int
    seq: int
    text: str

    def message(self) -> bytes:
        """The delta as a server-sent message: `event: delta`, and no `id`."""
        data = {"run_id": str(self.run_id), "step_id": self.step_id, "attempt": self.attempt,
                "seq": self.seq, "text": self.text}  # fmt: skip
        return sse_format.message(json.dumps(data, ensure_ascii=False), event="delta")

    def payload(self, origin: str) -> str:
        return json.dumps(
            [origin, str(self.tenant_id), str(self.run_id), self.step_id, self.attempt,
             self.seq, self.text],
            ensure_ascii=False, separators=(",", ":"),
        )  # fmt: skip


class Subscription:
    """One stream's deltas: of a tenant's run, or of every run of the tenant (`run_id` None).

    `bell` is done once a delta waits here or the stream must end (`ending`): what the
    stream's producer waits on besides the log, so that a delta wakes it."""

    def __init__(self, tenant_id: uuid.UUID, run_id: uuid.UUID | None, ending: Any) -> None:
        self.tenant_id = tenant_id
        self.run_id = run_id
        self._ending: asyncio.Future[Any] = ending
        self._queue: deque[Delta] = deque()
        self.bell: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ending.add_done_callback(self._ring)

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def offer(self, delta: Delta) -> None:
        if len(self._queue) >= QUEUE_SIZE:
            metrics.stream_deltas_dropped.inc()
            return
        self._queue.append(delta)
        self._ring()

    def take(self) -> bytes:
        """The deltas waiting, as one write; the bell is rung again by the next."""
        taken = b"".join(delta.message() for delta in self._queue)
        self._queue.clear()
        if self.bell.done() and not self._ending.done():
            self.bell = asyncio.get_running_loop().create_future()
        return taken

    def close(self) -> None:
        self._ending.remove_done_callback(self._ring)

    def _ring(self, *_: Any) -> None:
        if not self.bell.done():
            self.bell.set_result(None)


class DeltaHub:
    """A process's deltas, from the publishers of its worker's steps to its streams."""

    def __init__(self, db: Database | None = None) -> None:
        self._db = db
        self._notifies = db is not None and not db.is_sqlite
        self._origin = uuid.uuid4().hex
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self._count = 0
        self._listener: asyncio.Task[None] | None = None

    def publisher(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, step_id: str, attempt: int
    ) -> Publisher:
        return Publisher(self, (tenant_id, run_id, step_id, attempt))

    @contextlib.contextmanager
    def subscribe(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID | None, ending: asyncio.Future[Any]
    ) -> Iterator[Subscription]:
        """Deltas of the tenant's run (or runs) for a stream, while the block lasts."""
        subscription = Subscription(tenant_id, run_id, ending)
        self._subscribers.setdefault(tenant_id, set()).add(subscription)
        self._count += 1
        if self._notifies and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="delta-listener")
        try:
            yield subscription
        finally:
            subscription.close()
            self._count -= 1
            of_tenant = self._subscribers.get(tenant_id, set())
            of_tenant.discard(subscription)
            if not of_tenant:
                self._subscribers.pop(tenant_id, None)
            if not self._count and self._listener is not None:
                self._listener.cancel()  # it leaves the channel as it ends
                self._listener = None

    def deliver(self, deltas: list[Delta]) -> None:
        for delta in deltas:
            for subscription in self._subscribers.get(delta.tenant_id, ()):
                if subscription.run_id is None or subscription.run_id == delta.run_id:
                    subscription.offer(delta)

    async def notify(self, deltas: list[Delta]) -> None:
        """Tells the other processes (PostgreSQL): one NOTIFY a delta, one transaction."""
        from sqlalchemy import String, bindparam, func, select

        assert self._db is not None
        statement = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("payload", type_=String())))
        async with self._db.transaction() as conn:
            for delta in deltas:
                await conn.execute(statement, {"payload": delta.payload(self._origin)})

    async def _listen(self) -> None:
        from workflow_engine.db.listener import listen_payloads

        assert self._db is not None
        await listen_payloads(self._db, NOTIFY_CHANNEL, self._received)

    def _received(self, payload: str) -> None:
        try:
            origin, tenant, run, step, attempt, seq, text = json.loads(payload)
            if origin == self._origin:
                return  # delivered directly when it was published
            delta = Delta(uuid.UUID(tenant), uuid.UUID(run), str(step), int(attempt), int(seq),
                          str(text))  # fmt: skip
        except (ValueError, TypeError):
            logger.warning("a delta notification that is not one was ignored")
            return
        self.deliver([delta])

    @property
    def notifies(self) -> bool:
        return self._notifies


class Publisher:
    """The deltas of one step attempt: pieces gathered for `FLUSH_SECONDS`, then delivered in
    this process and, on PostgreSQL, sent to the others in order by one task at a time."""

    def __init__(self, hub: DeltaHub, key: tuple[uuid.UUID, uuid.UUID, str, int]) -> None:
        self._hub = hub
        self._key = key
        self._buffer: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0
        self._outbox: list[Delta] = []
        self._sending: asyncio.Task[None] | None = None
        self._closed = False

    async def publish(self, text: str) -> None:
        if not text or self._closed:
            return
        # A provider may stream half of a surrogate pair; a stream cannot encode it.
        self._buffer.append(storable_text(text))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        self._closed = True
        if self._sending is not None:
            await self._sending

    def _flush(self) -> None:
        self._timer = None
        text = "".join(self._buffer)
        self._buffer.clear()
        if not text:
            return
        deltas = []
        for start in range(0, len(text), PIECE_CHARS):
            self._seq += 1
            deltas.append(Delta(*self._key, self._seq, text[start : start + PIECE_CHARS]))
        metrics.stream_deltas.inc(len(deltas))
        self._hub.deliver(deltas)
        if self._hub.notifies:
            self._outbox.extend(deltas)
            if self._sending is None or self._sending.done():
                self._sending = asyncio.create_task(self._send(), name="delta-notify")

    async def _send(self) -> None:
        while self._outbox:
            deltas, self._outbox = self._outbox, []
            try:
                await self._hub.notify(deltas)
            except Exception as exc:  # transient by design: the step goes on without them
                logger.debug("deltas not sent to other processes", error=type(exc).__name__)


_hubs: weakref.WeakKeyDictionary[Database, DeltaHub] = weakref.WeakKeyDictionary()


def hub_for(db: Database) -> DeltaHub:
    """The process's hub for `db`: the embedded worker's deltas reach the API's streams
    because both reach it through the same database object."""
    hub = _hubs.get(db)
    if hub is None:
        hub = _hubs[db] = DeltaHub(db)
    return hub
