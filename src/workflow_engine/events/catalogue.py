"""The catalogue of aggregates: one row per aggregate with its type, version and last event.

A read model folded from the log (the first projection), behind `GET /api/v1/aggregates`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Executable, case, select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import aggregates
from workflow_engine.db.upsert import upsert
from workflow_engine.events.projections import Projection
from workflow_engine.events.store import RecordedEvent


class AggregateCatalogue(Projection):
    name = "aggregates"
    version = 1
    tables = (aggregates,)
    reads_before_writing = False  # one upsert per event

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await conn.execute(
            _folding_upsert(conn),
            {
                "tenant_id": event.tenant_id,
                "aggregate_id": event.aggregate_id,
                "aggregate_type": event.aggregate_type,
                "version": event.version,
                "last_event_type": event.event_type,
                "last_position": event.position,
                "created_at": event.recorded_at,
                "updated_at": event.recorded_at,
            },
        )


_UPSERTS: dict[str, Executable] = {}


def _folding_upsert(conn: AsyncConnection) -> Executable:
    """The catalogue's upsert, its values given when executed. Built once per dialect: every
    appended event runs it, and building the statement (its `excluded` alias, four `CASE`s)
    cost more than the rest of an append together."""
    found = _UPSERTS.get(conn.dialect.name)
    if found is None:
        insert = upsert(conn, aggregates)
        excluded = insert.excluded
        # Events may arrive out of version order in a rebuild (see projections): the latest
        # version decides the "last" fields, the earliest event the creation time.
        newer = aggregates.c.version < excluded.version
        latest = {
            name: case((newer, getattr(excluded, name)), else_=getattr(aggregates.c, name))
            for name in ("version", "last_event_type", "last_position", "updated_at")
        }
        earliest = case(
            (excluded.created_at < aggregates.c.created_at, excluded.created_at),
            else_=aggregates.c.created_at,
        )
        found = _UPSERTS[conn.dialect.name] = insert.on_conflict_do_update(
            index_elements=[aggregates.c.tenant_id, aggregates.c.aggregate_id],
            set_={**latest, "created_at": earliest},
        )
    return found


@dataclass(frozen=True)
class AggregateSummary:
    aggregate_type: str
    aggregate_id: str
    version: int
    last_event_type: str
    last_position: int
    created_at: datetime
    updated_at: datetime


async def list_aggregates(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    aggregate_type: str | None = None,
    after_id: str | None = None,
    limit: int = 100,
) -> list[AggregateSummary]:
    """The tenant's aggregates in id order, optionally of one type, after `after_id`."""
    stmt = (
        select(
            aggregates.c.aggregate_type,
            aggregates.c.aggregate_id,
            aggregates.c.version,
            aggregates.c.last_event_type,
            aggregates.c.last_position,
            aggregates.c.created_at,
            aggregates.c.updated_at,
        )
        .where(aggregates.c.tenant_id == tenant_id)
        .order_by(aggregates.c.aggregate_id)
        .limit(limit)
    )
    if aggregate_type is not None:
        stmt = stmt.where(aggregates.c.aggregate_type == aggregate_type)
    if after_id is not None:
        stmt = stmt.where(aggregates.c.aggregate_id > after_id)
    return [AggregateSummary(**row._mapping) for row in await conn.execute(stmt)]
