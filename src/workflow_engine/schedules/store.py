"""The schedules' SQL: every statement on `schedules` lives here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import schedules
from workflow_engine.schedules.timing import CatchUp, Timing


@dataclass(frozen=True)
class Schedule:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    workflow_name: str
    workflow_version: int | None
    data: Any
    cron: str | None
    timezone: str
    interval_seconds: float | None
    start_at: datetime | None
    end_at: datetime | None
    catch_up: CatchUp
    priority: int
    paused: bool
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    last_run_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> Schedule:
        values = dict(row._mapping)
        values["catch_up"] = CatchUp(values["catch_up"])
        return cls(**values)

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.timezone, self.interval_seconds, self.start_at,
                      self.end_at, anchor=self.start_at or self.created_at)  # fmt: skip

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


async def insert_schedule(conn: AsyncConnection, schedule: Schedule) -> None:
    await conn.execute(insert(schedules).values(schedule.values()))


async def name_taken(conn: AsyncConnection, tenant_id: uuid.UUID, name: str) -> bool:
    found = await conn.execute(
        select(schedules.c.id).where(schedules.c.tenant_id == tenant_id, schedules.c.name == name)
    )
    return found.first() is not None


async def count(conn: AsyncConnection, tenant_id: uuid.UUID) -> int:
    found = await conn.execute(
        select(func.count()).select_from(schedules).where(schedules.c.tenant_id == tenant_id)
    )
    return int(found.scalar_one())


async def get(
    conn: AsyncConnection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, *, lock: bool = False
) -> Schedule | None:
    stmt = select(schedules).where(
        schedules.c.id == schedule_id, schedules.c.tenant_id == tenant_id
    )
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return None if row is None else Schedule.from_row(row)


async def list_schedules(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    workflow_name: str | None = None,
    after: tuple[str, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Schedule]:
    """The tenant's schedules ordered by name then id, after the (name, id) key `after`."""
    stmt = select(schedules).where(schedules.c.tenant_id == tenant_id)
    if workflow_name is not None:
        stmt = stmt.where(schedules.c.workflow_name == workflow_name)
    if after is not None:
        after_name, after_id = after
        stmt = stmt.where(
            (schedules.c.name > after_name)
            | ((schedules.c.name == after_name) & (schedules.c.id > after_id))
        )
    stmt = stmt.order_by(schedules.c.name, schedules.c.id).limit(limit)
    return [Schedule.from_row(row) for row in await conn.execute(stmt)]


async def change(conn: AsyncConnection, schedule_id: uuid.UUID, values: dict[str, Any]) -> None:
    await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(values))


async def remove(conn: AsyncConnection, schedule_id: uuid.UUID) -> None:
    await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))


async def due(conn: AsyncConnection, now: datetime, limit: int) -> list[Schedule]:
    """Schedules with a tick due by `now`, locked until the transaction ends; on PostgreSQL
    those another process has locked are passed over (it is firing them)."""
    stmt = (
        select(schedules)
        .where(schedules.c.next_fire_at.is_not(None), schedules.c.next_fire_at <= now)
        .order_by(schedules.c.next_fire_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [Schedule.from_row(row) for row in await conn.execute(stmt)]


async def next_due(conn: AsyncConnection) -> datetime | None:
    """The earliest tick of any schedule (to sleep until then)."""
    found = await conn.execute(select(func.min(schedules.c.next_fire_at)))
    earliest: datetime | None = found.scalar_one_or_none()
    return earliest
