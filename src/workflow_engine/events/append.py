"""The one way to write events: append them and fold them into every read model, atomically."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import after_commit
from workflow_engine.events.projections import Projections, registry
from workflow_engine.events.store import NewEvent, RecordedEvent, insert_events
from workflow_engine.events.system_types import is_system_type
from workflow_engine.observability import metrics


async def append_events(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    aggregate_type: str,
    aggregate_id: str,
    new_events: Sequence[NewEvent],
    expected_version: int | None,
    exclusive: bool = False,
    projections: Projections = registry,
) -> list[RecordedEvent]:
    """Append `new_events` to an aggregate inside the caller's write transaction and fold them
    into the registered projections in that same transaction.

    `expected_version` is the version the caller last saw: 0 for a new aggregate, None to
    append whatever the current version is (still safe against a concurrent appender).
    Raises `ConcurrencyConflict` when the aggregate moved on, and `Conflict` when the
    aggregate exists under another type; the caller's transaction stays usable either way.
    `exclusive`: see `insert_events`.
    """
    stored = await insert_events(
        conn,
        tenant_id=tenant_id,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        new_events=new_events,
        expected_version=expected_version,
        exclusive=exclusive,
    )
    await projections.apply(conn, stored)
    label = aggregate_type if is_system_type(aggregate_type) else "client"
    after_commit(conn, lambda: metrics.events_appended.labels(label).inc(len(stored)))
    return stored
