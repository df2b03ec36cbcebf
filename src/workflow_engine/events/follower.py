"""Following the log for one subscriber: read, deliver, wait for a wake-up, read again.

Each follower reads the database itself from its own cursor, so a slow consumer holds no
buffer and delays nobody: it simply reads further behind, and catches up at its own pace.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import anyio
from sse_starlette import ServerSentEvent

from workflow_engine.events.notifier import FOLLOW_TIMEOUT, LogNotifier
from workflow_engine.events.service import EventStore
from workflow_engine.events.store import RecordedEvent

BATCH = 500


class LogFollower:
    def __init__(
        self,
        store: EventStore,
        notifier: LogNotifier,
        tenant_id: uuid.UUID,
        after: int,
        *,
        aggregate_id: str | None = None,
        aggregate_type: str | None = None,
        type_prefix: str | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._tenant_id = tenant_id
        self.cursor = after
        self._aggregate_id = aggregate_id
        self._aggregate_type = aggregate_type
        self._type_prefix = type_prefix

    def wanted(self, event: RecordedEvent) -> bool:
        return (
            (self._aggregate_id is None or event.aggregate_id == self._aggregate_id)
            and (self._aggregate_type is None or event.aggregate_type == self._aggregate_type)
            and (self._type_prefix is None or event.event_type.startswith(self._type_prefix))
        )

    async def messages(self, stop: anyio.Event) -> AsyncIterator[ServerSentEvent]:
        """Messages until `stop` is set (the server is shutting down): then the generator
        returns, and the response ends cleanly instead of being cut off."""
        while not stop.is_set():
            batch = await self._store.read_log(
                after=self.cursor, limit=BATCH, tenant_id=self._tenant_id
            )
            for event in batch:
                self.cursor = event.position
                if self.wanted(event):
                    yield ServerSentEvent(
                        id=str(event.position), event=event.event_type, data=_json(event)
                    )
            if len(batch) < BATCH:  # caught up: wait for the log to grow, or for shutdown
                with anyio.move_on_after(FOLLOW_TIMEOUT):
                    async with anyio.create_task_group() as waiting:

                        async def on_stop() -> None:
                            await stop.wait()
                            waiting.cancel_scope.cancel()

                        waiting.start_soon(on_stop)
                        await self._notifier.wait()
                        waiting.cancel_scope.cancel()


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
