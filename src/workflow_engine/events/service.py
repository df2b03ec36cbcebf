"""The event log as a service: tenant-confined reads, upcast to the current event shapes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from workflow_engine.db import Database
from workflow_engine.events.store import (
    NewEvent,
    RecordedEvent,
    append_events,
    current_version,
    last_position,
    log_head,
    read_aggregate,
    read_log,
    search_events,
)
from workflow_engine.events.upcasting import Upcasters


class EventStore:
    """The event log as a service: reads confined to a tenant and upcast to current shapes.

    Code that must update read models atomically with its events calls `append_events`
    inside its own transaction instead of `append`.
    """

    def __init__(self, db: Database, upcasters: Upcasters | None = None) -> None:
        self.db = db
        self.upcasters = upcasters or Upcasters()

    async def append(
        self,
        *,
        tenant_id: uuid.UUID,
        aggregate_type: str,
        aggregate_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None,
    ) -> list[RecordedEvent]:
        async with self.db.tenant_transaction(tenant_id) as conn:
            return await append_events(
                conn,
                tenant_id=tenant_id,
                aggregate_type=aggregate_type,
                aggregate_id=aggregate_id,
                new_events=new_events,
                expected_version=expected_version,
            )

    async def read_aggregate(
        self,
        tenant_id: uuid.UUID,
        aggregate_id: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        async with self.db.tenant_read(tenant_id) as conn:
            found = await read_aggregate(
                conn, tenant_id, aggregate_id, from_version=from_version, limit=limit
            )
        return [self.upcasters.apply(event) for event in found]

    async def aggregate_exists(self, tenant_id: uuid.UUID, aggregate_id: str) -> bool:
        async with self.db.tenant_read(tenant_id) as conn:
            return await current_version(conn, tenant_id, aggregate_id) > 0

    async def read_log(
        self, *, after: int = 0, limit: int = 500, tenant_id: uuid.UUID | None = None
    ) -> list[RecordedEvent]:
        """Follow the log; confined to `tenant_id` when given (system-wide otherwise)."""
        reading = self.db.tenant_read(tenant_id) if tenant_id else self.db.read()
        async with reading as conn:
            found = await read_log(conn, after=after, limit=limit, tenant_id=tenant_id)
        return [self.upcasters.apply(event) for event in found]

    async def search(self, tenant_id: uuid.UUID, **filters: Any) -> list[RecordedEvent]:
        """`search_events` for one tenant (the audit view)."""
        async with self.db.tenant_read(tenant_id) as conn:
            found = await search_events(conn, tenant_id, **filters)
        return [self.upcasters.apply(event) for event in found]

    async def log_head(self, tenant_id: uuid.UUID | None = None) -> int:
        reading = self.db.tenant_read(tenant_id) if tenant_id else self.db.read()
        async with reading as conn:
            return await log_head(conn)

    async def last_position(self) -> int:
        async with self.db.read() as conn:
            return await last_position(conn)
