"""Following the log for one subscriber, without gaps or duplicates, at the subscriber's pace.

A follower caught up with the shared tail (`events/tail.py`) takes its next events from the
tail's window; one that is behind it reads the database from its own cursor, in batches, until
it reaches the window. Either way it holds at most one batch: a slow consumer delays nobody
and grows no buffer, it just falls behind the window and catches up from the database.

Cursors are log keys (see `store.py`); clients see positions, the `id` of each message. An
event in the tail's window is encoded as a message once, however many subscribers send it.

A follower streaming to a client (`stream`) that is caught up parks in the tail (`_Parked`,
`LogTail.park`): the tail's task writes its next events to its outlet as it reads them, with
no task woken, until the outlet must wait for the client (a send left over, which the
follower's task finishes), the follower falls behind the window, or a burst is more than one
write: then the follower goes on in its own task, as above.

A stream that shows deltas (`engine/deltas.py`) writes those waiting before its next events, and
is woken by a delta as by an event: a parked follower with deltas waiting goes back to its
own task, so that none of them comes after an event appended after it was published.

A follower ends as soon as `ending` is done: its stream must end (the client went away, the
server is stopping, the caller's credential was let go; see `api/sse.py`).

Messages go out in writes of about `WRITE_BYTES`: a client that stops reading holds one write
and its socket's buffer in the server, not a whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from workflow_engine.events import sse_format
from workflow_engine.events.notifier import FOLLOW_TIMEOUT
from workflow_engine.events.service import EventStore
from workflow_engine.events.store import LogKey, RecordedEvent
from workflow_engine.events.tail import LogTail

if TYPE_CHECKING:
    from workflow_engine.engine.deltas import DeltaHub, Subscription

BATCH = 500
WRITE_BYTES = 64 * 1024


class Outlet(Protocol):
    """Where a stream's messages go (`api/sse.py`)."""

    @property
    def pending(self) -> bool:
        """Whether an offered send is left over, to be finished by `flush`."""

    async def write(self, chunk: bytes) -> None:
        """Sends `chunk` after any send left over, waiting for the client if it must."""

    def offer(self, chunk: bytes) -> bool:
        """Sends `chunk` if that takes no waiting (True); else leaves the send over (False)."""

    async def flush(self) -> None:
        """Finishes the send left over, if any."""


class LogFollower:
    def __init__(
        self,
        store: EventStore,
        tail: LogTail,
        tenant_id: uuid.UUID,
        after: int | None,
        *,
        aggregate_id: str | None = None,
        aggregate_type: str | None = None,
        type_prefix: str | None = None,
        deltas: DeltaHub | None = None,
        delta_run: uuid.UUID | None = None,
    ) -> None:
        """`after` is the position to resume after; None starts at the present. With `deltas`,
        a stream shows the deltas of the tenant's running steps too (of `delta_run` only,
        when given), between the events (`engine/deltas.py`)."""
        self._store = store
        self._tail = tail
        self._tenant_id = tenant_id
        self._after = after
        self._aggregate_id = aggregate_id
        self._aggregate_type = aggregate_type
        self._type_prefix = type_prefix
        self._hub = deltas
        self._delta_run = delta_run
        self._deltas: Subscription | None = None
        # What followers alike share (`_Parked.deliver`); the tenant as an int: a UUID hashes
        # in Python, a thousand times a pass.
        self.filters = (tenant_id.int, aggregate_id, aggregate_type, type_prefix)

    def wanted(self, event: RecordedEvent) -> bool:
        return (
            event.tenant_id == self._tenant_id  # the tail holds every tenant's events
            and (self._aggregate_id is None or event.aggregate_id == self._aggregate_id)
            and (self._aggregate_type is None or event.aggregate_type == self._aggregate_type)
            and (self._type_prefix is None or event.event_type.startswith(self._type_prefix))
        )

    async def stream(self, ending: asyncio.Future[Any], outlet: Outlet) -> None:
        """Writes the wanted events as messages until `ending` is done: then it returns, and
        the response ends cleanly instead of being cut off. The wanted events of one read go
        out together, in as few writes as `WRITE_BYTES` allows."""
        with self._tail.following(), self._subscribed(ending) as deltas:
            async for batch in self._follow(ending, outlet):
                if deltas is not None and deltas.pending:  # published before these events
                    await outlet.write(deltas.take())
                encoded = [self._tail.encoded(event, message) for event in batch]
                for chunk in _writes(encoded):
                    await outlet.write(chunk)

    @contextlib.contextmanager
    def _subscribed(self, ending: asyncio.Future[Any]) -> Iterator[Subscription | None]:
        if self._hub is None:
            yield None
            return
        with self._hub.subscribe(self._tenant_id, self._delta_run, ending) as deltas:
            self._deltas = deltas
            try:
                yield deltas
            finally:
                self._deltas = None

    async def events(self, ending: asyncio.Future[Any]) -> AsyncIterator[RecordedEvent]:
        """The wanted events, in log order, until `ending` is done."""
        with self._tail.following():
            async for batch in self._follow(ending):
                for event in batch:
                    yield event

    async def _follow(
        self, ending: asyncio.Future[Any], outlet: Outlet | None = None
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of wanted events, each from one read of the window or the database; with an
        outlet, those the tail's task delivers while the follower is parked are not among
        them."""
        if self._after is not None:
            key = await self._store.log_key(self._tenant_id, self._after)
        else:
            key = self._tail.end or await self._store.log_head(self._tenant_id)
        while not ending.done():
            if self._deltas is not None and self._deltas.pending:
                yield []  # the stream writes them
            # What wakes a wait: the stream's end, or a delta to write.
            bell = ending if self._deltas is None else self._deltas.bell
            seen = self._tail.generation
            recent = self._tail.since(key)
            if recent is None:  # behind the window: catch up from the database
                settled = self._tail.end  # taken before the read, see `_caught_up`
                batch = await self._store.read_log(
                    after=key, limit=BATCH, tenant_id=self._tenant_id
                )
                if ending.done():
                    return
                if batch:
                    key = batch[-1].key
                    if wanted := [event for event in batch if self.wanted(event)]:
                        yield wanted
                if len(batch) == BATCH:
                    continue
                if settled is None:  # the tail has not found the log yet: poll politely
                    await self._tail.wait(seen, FOLLOW_TIMEOUT, unless=bell)
                key = _caught_up(key, settled)
                continue
            if recent:
                key = recent[-1].key
                if wanted := [event for event in recent if self.wanted(event)]:
                    yield wanted
            elif outlet is None:
                await self._tail.wait(seen, None, unless=ending)
            elif outlet.pending:
                await outlet.flush()  # the tail's task offers only to an outlet with none
            else:  # caught up, and nothing awaited since `since`: park
                parked = _Parked(self, key, outlet)
                await self._tail.park(parked, unless=bell)
                key = parked.key


class _Parked:
    """A caught-up follower while the tail's task delivers its events (`LogTail.park`)."""

    __slots__ = ("_follower", "_outlet", "key")

    def __init__(self, follower: LogFollower, key: LogKey, outlet: Outlet) -> None:
        self._follower = follower
        self._outlet = outlet
        self.key = key

    def deliver(self, alike: dict[Any, Any]) -> bool:
        deltas = self._follower._deltas
        if deltas is not None and deltas.pending:
            return False  # its task writes them first: they were published before these events
        # Followers with the same filters at the same cursor get the same write: made once.
        same = (self._follower.filters, self.key)
        if same not in alike:
            alike[same] = self._next_write()
        write = alike[same]
        if write is None:
            return False  # behind the window: the follower goes on by itself
        sent = not write.chunk or self._outlet.offer(write.chunk)
        self.key = write.last  # offered: sent, or left over for the follower's task to finish
        return sent and not write.more

    def _next_write(self) -> _Write | None:
        """What the window holds beyond the cursor for this follower, as one write of about
        `WRITE_BYTES` at most; None when the cursor is older than the window."""
        tail = self._follower._tail
        recent = tail.since(self.key)
        if recent is None:
            return None
        messages, size, last = [], 0, self.key
        for event in recent:
            last = event.key
            if self._follower.wanted(event):
                messages.append(tail.encoded(event, message))
                size += len(messages[-1])
                if size >= WRITE_BYTES:
                    break
        return _Write(b"".join(messages), last, more=last != tail.end)


class _Write(NamedTuple):
    chunk: bytes  # empty when none of the events is wanted
    last: LogKey  # the last event it covers
    more: bool  # events remain: the rest of a burst is the follower's work, not everyone's wait


def _caught_up(key: LogKey, settled: LogKey | None) -> LogKey:
    """After a database read that returned everything the tenant had beyond `key`, the
    follower may skip to `settled` (the tail's end before the read): every event up to it was
    committed before the read began, so the read saw every one of them that it wanted."""
    return key if settled is None else max(key, settled)


def _writes(messages: list[bytes]) -> Iterator[bytes]:
    """`messages` joined into writes of about `WRITE_BYTES` (at least one message each)."""
    first, size = 0, 0
    for index, encoded in enumerate(messages):
        size += len(encoded)
        if size >= WRITE_BYTES:
            yield b"".join(messages[first : index + 1])
            first, size = index + 1, 0
    if first < len(messages):
        yield b"".join(messages[first:])  # one message: the window's own bytes, not a copy


def message(event: RecordedEvent) -> bytes:
    """The event as one server-sent message: `id` its position, `event` its type."""
    return sse_format.message(_json(event), id=str(event.position), event=event.event_type)


def _json(event: RecordedEvent) -> str:
    return json.dumps(
        {
            "event_id": str(event.event_id),
            "position": event.position,
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            "version": event.version,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "data": event.data,
            "metadata": event.metadata,
            "recorded_at": event.recorded_at.isoformat(),
        },
        separators=(",", ":"),
    )
