"""The tail of the log, read once per process and shared by every live follower.

While anyone follows, one task reads the whole log (every tenant) from where it last stopped
whenever the notifier wakes it (an append committed, or a second passed), and keeps the latest
events in a window of bounded size. With no follower it reads nothing (a busy server would
otherwise query the log after every commit for nobody) and forgets its window; the next
follower catches up from the database as any late follower does. Followers that are caught up
take their next events from the window — no query of their own — and followers that fell behind
it (a slow consumer, a client resuming from an old position) read the database from their own
cursor until they reach it. So a thousand idle subscribers cost one query per wake-up, not a
thousand, and memory is bounded by the window (in events and in bytes) whatever the consumers
do: a follower takes at most one batch from it at a time. The window also keeps each event's
encoded message once a subscriber asked for it, so the thousand send the same bytes.

A caught-up stream does not even wait to be woken: it parks here (`park`), and right after
each read the tail's task hands every parked follower its new events (`Parked.deliver`), which
write them to their streams without waiting — one pass over a thousand streams instead of a
thousand tasks woken one by one. A follower goes back to its own task when its stream must
wait for its client, when it fell behind the window, or when its stream ends.

The window holds a contiguous run of the log: every event whose key lies in
(`start`, `end`], in log order. Tenant filtering is the follower's job; the tail reads with
the server's own connection, not a tenant-confined one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import structlog

from workflow_engine.events.notifier import FOLLOW_TIMEOUT, LogNotifier
from workflow_engine.events.service import EventStore
from workflow_engine.events.signal import Signal
from workflow_engine.events.store import LogKey, RecordedEvent

logger = structlog.get_logger(__name__)

READ_BATCH = 500
WINDOW_EVENTS = 10_000
WINDOW_BYTES = 16 * 1024 * 1024
IDLE_WAIT = 3600.0  # seconds; an idle tail wakes when a follower arrives


class Parked(Protocol):
    def deliver(self, alike: dict[Any, Any]) -> bool:
        """Writes what the window holds beyond the follower's cursor, without waiting; False
        when the follower must go on in its own task. `alike` is the same dict for every
        follower of one pass: followers alike work out what they send once."""


class LogTail:
    def __init__(
        self,
        store: EventStore,
        notifier: LogNotifier,
        *,
        window: int = WINDOW_EVENTS,
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._window = window
        self._window_bytes = window_bytes
        self._events: list[RecordedEvent] = []
        self._keys: list[LogKey] = []
        self._sizes: list[int] = []
        self._encoded: dict[LogKey, bytes] = {}
        self._bytes = 0
        self._start: LogKey | None = None
        self._changed = Signal()
        self._followers = 0
        self._followed = Signal()  # fired when the first follower arrives
        self._parked: dict[Parked, asyncio.Future[None]] = {}  # each with what wakes it
        self._task: asyncio.Task[None] | None = None

    @property
    def generation(self) -> int:
        return self._changed.generation

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-log-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Held by each follower while it follows: the tail reads only while someone does."""
        self._followers += 1
        if self._followers == 1:
            self._followed.fire()
        try:
            yield
        finally:
            self._followers -= 1

    @property
    def end(self) -> LogKey | None:
        """The last event the tail has read (everything up to it is settled for good); None
        until the tail has found the log's head (the database may be away at start)."""
        return self._keys[-1] if self._keys else self._start

    def since(self, key: LogKey, limit: int = READ_BATCH) -> list[RecordedEvent] | None:
        """Up to `limit` of the window's events after `key`, or None when `key` is older than
        the window (the caller must read the database to catch up)."""
        if self._start is None or key < self._start:
            return None
        first = bisect_right(self._keys, key)
        return self._events[first : first + limit]

    def encoded(self, event: RecordedEvent, encode: Callable[[RecordedEvent], bytes]) -> bytes:
        """`encode(event)`, made once for an event of the window and shared."""
        found = self._encoded.get(event.key)
        if found is None:
            found = encode(event)
            end = self.end
            if self._start is not None and end is not None and self._start < event.key <= end:
                self._encoded[event.key] = found
        return found

    async def wait(
        self,
        seen: int,
        timeout: float | None = FOLLOW_TIMEOUT,
        *,
        unless: asyncio.Future[Any] | None = None,
    ) -> bool:
        """Return once `generation` differs from `seen`, `unless` is done, or after `timeout`
        seconds (None: no limit); False only in the last case."""
        return await self._changed.wait(seen, timeout, unless=unless)

    async def park(self, follower: Parked, *, unless: asyncio.Future[Any]) -> None:
        """Hands a caught-up follower to the tail's task, which delivers its new events from
        now on; returns when `deliver` says it must go on by itself, or `unless` is done. The
        caller must have seen nothing new for it since the tail's last read (and not awaited
        since): what the tail reads next is the follower's next delivery."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked[follower] = woken
        wake = functools.partial(_wake, woken)
        unless.add_done_callback(wake)
        try:
            await woken
        finally:
            self._parked.pop(follower, None)
            unless.remove_done_callback(wake)

    async def _run(self) -> None:
        while True:
            if not self._followers:
                self._forget()
                idle = self._followed.generation
                while not self._followers:
                    await self._followed.wait(idle, IDLE_WAIT)
            # Taken before reading: a commit announced during the read is not slept through.
            seen = self._notifier.generation
            try:
                if self._start is None:
                    self._start = await self._store.log_head()
                    self._changed.fire()  # followers waiting for the tail to find the log
                await self._read_to_horizon()
            except Exception as exc:  # the database is away: health reports it; keep trying
                logger.debug("event log tail read failed", error=type(exc).__name__)
            await self._notifier.wait(seen)

    def _deliver(self) -> None:
        alike: dict[Any, Any] = {}
        for follower, woken in list(self._parked.items()):
            try:
                stays = follower.deliver(alike)
            except Exception:  # its own task will meet the error again, and end its stream
                logger.exception("delivering to a parked follower failed")
                stays = False
            if not stays:
                del self._parked[follower]
                _wake(woken)

    def _forget(self) -> None:
        self._events.clear()
        self._encoded.clear()
        self._keys.clear()
        self._sizes.clear()
        self._bytes = 0
        self._start = None

    async def _read_to_horizon(self) -> None:
        while (end := self.end) is not None:
            batch = await self._store.read_log(after=end, limit=READ_BATCH)
            if batch:
                self._events.extend(batch)
                self._keys.extend(event.key for event in batch)
                sizes = [_size(event) for event in batch]
                self._sizes.extend(sizes)
                self._bytes += sum(sizes)
                self._trim()
                self._changed.fire()
                self._deliver()
            if len(batch) < READ_BATCH:
                return

    def _trim(self) -> None:
        if len(self._events) <= self._window and self._bytes <= self._window_bytes:
            return
        # Down to three quarters of both limits at once: slicing is O(n), so trim in chunks.
        dropped, freed = 0, 0
        while (
            len(self._events) - dropped > self._window * 3 // 4
            or self._bytes - freed > self._window_bytes * 3 // 4
        ) and dropped < len(self._events) - 1:
            freed += self._sizes[dropped]
            dropped += 1
        self._start = self._keys[dropped - 1]
        for key in self._keys[:dropped]:
            self._encoded.pop(key, None)
        del self._events[:dropped]
        del self._keys[:dropped]
        del self._sizes[:dropped]
        self._bytes -= freed


def _wake(woken: asyncio.Future[None], *_: Any) -> None:
    if not woken.done():
        woken.set_result(None)


def _size(event: RecordedEvent) -> int:
    """Roughly what the event holds in memory: its documents' JSON size plus a fixed part."""
    return 256 + len(json.dumps(event.data)) + len(json.dumps(event.metadata))
