"""What the schedules API does: create, change, pause and resume, delete — each change an event
on the schedule's aggregate, in the transaction that makes it.

A schedule names a workflow the server has and input its schema accepts, both checked when it
is created or changed (a template removed later makes its ticks fail, recorded as events).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth.audit import RequestOrigin, record
from workflow_engine.db import Database
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.runs import check_input
from workflow_engine.errors import Conflict, InvalidInput, NotFound
from workflow_engine.schedules import store
from workflow_engine.schedules.store import Schedule
from workflow_engine.schedules.timing import CatchUp, TimingError

AGGREGATE = "schedules"
MAX_SCHEDULES_PER_TENANT = 1000  # the ticker's work is shared: no tenant may crowd it
# What a change may set; `paused` pauses or resumes.
CHANGEABLE = frozenset({
    "name", "workflow_name", "workflow_version", "data", "cron", "timezone", "interval_seconds",
    "start_at", "end_at", "catch_up", "priority", "paused",
})  # fmt: skip
_TIMING = frozenset({"cron", "timezone", "interval_seconds", "start_at", "end_at"})


@dataclass(frozen=True)
class Actor:
    tenant_id: uuid.UUID
    actor: str
    origin: RequestOrigin


async def create(
    db: Database, catalog: DefinitionCatalog, spec: dict[str, Any], by: Actor
) -> Schedule:
    now = datetime.now(UTC)
    schedule = Schedule(
        id=uuid.uuid4(), tenant_id=by.tenant_id, name=spec["name"],
        workflow_name=spec["workflow_name"], workflow_version=spec.get("workflow_version"),
        data=spec.get("data", {}), cron=spec.get("cron"), timezone=spec.get("timezone", "UTC"),
        interval_seconds=spec.get("interval_seconds"), start_at=spec.get("start_at"),
        end_at=spec.get("end_at"), catch_up=CatchUp(spec.get("catch_up", CatchUp.skip)),
        priority=spec.get("priority", 0), paused=spec.get("paused", False), next_fire_at=None,
        last_fired_at=None, last_run_id=None, created_by=by.actor, created_at=now, updated_at=now,
    )  # fmt: skip
    _check(catalog, schedule)
    schedule = replace(schedule, next_fire_at=_next(schedule, now))
    async with db.tenant_transaction(by.tenant_id) as conn:
        if await store.count(conn, by.tenant_id) >= MAX_SCHEDULES_PER_TENANT:
            raise Conflict(f"the tenant has {MAX_SCHEDULES_PER_TENANT} schedules, the most it "
                           "may have; delete some first")  # fmt: skip
        if await store.name_taken(conn, by.tenant_id, schedule.name):
            raise Conflict(f"a schedule named {schedule.name!r} exists")
        await store.insert_schedule(conn, schedule)
        await _record(conn, schedule, "ScheduleCreated", by, _described(schedule))
    return schedule


async def get(db: Database, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> Schedule:
    async with db.tenant_read(tenant_id) as conn:
        found = await store.get(conn, tenant_id, schedule_id)
    if found is None:
        raise NotFound(f"no schedule {schedule_id}")
    return found


async def change(
    db: Database,
    catalog: DefinitionCatalog,
    schedule_id: uuid.UUID,
    changes: dict[str, Any],
    by: Actor,
) -> Schedule:
    """Apply `changes` (fields of `CHANGEABLE`). Giving `cron` drops the interval and giving
    `interval_seconds` drops the cron expression, unless both are given. A schedule whose
    timing changes, or that resumes, fires next at its first tick from now."""
    changes = dict(changes)
    if changes.get("cron") is not None and "interval_seconds" not in changes:
        changes["interval_seconds"] = None
    if changes.get("interval_seconds") is not None and "cron" not in changes:
        changes["cron"] = None
    now = datetime.now(UTC)
    async with db.tenant_transaction(by.tenant_id) as conn:
        before = await store.get(conn, by.tenant_id, schedule_id, lock=True)
        if before is None:
            raise NotFound(f"no schedule {schedule_id}")
        if "catch_up" in changes:
            changes["catch_up"] = CatchUp(changes["catch_up"])
        after = replace(before, **changes, updated_at=now)
        changed = {k: v for k, v in changes.items() if getattr(before, k) != v}
        if not changed:
            return before
        _check(catalog, after)
        if "name" in changed and await store.name_taken(conn, by.tenant_id, after.name):
            raise Conflict(f"a schedule named {after.name!r} exists")
        if after.paused:
            after = replace(after, next_fire_at=None)
        elif before.paused or changed.keys() & _TIMING:
            after = replace(after, next_fire_at=_next(after, now))
        await store.change(conn, schedule_id, {**changed, "next_fire_at": after.next_fire_at,
                                               "updated_at": now})  # fmt: skip
        if changed.keys() - {"paused"}:
            described = _described(after)
            await _record(conn, after, "ScheduleUpdated", by,
                          {k: described[k] for k in changed if k != "paused"})  # fmt: skip
        if "paused" in changed:
            await _record(conn, after, "SchedulePaused" if after.paused else "ScheduleResumed",
                          by, {"name": after.name})  # fmt: skip
    return after


async def delete(db: Database, schedule_id: uuid.UUID, by: Actor) -> None:
    async with db.tenant_transaction(by.tenant_id) as conn:
        found = await store.get(conn, by.tenant_id, schedule_id, lock=True)
        if found is None:
            raise NotFound(f"no schedule {schedule_id}")
        await store.remove(conn, schedule_id)
        await _record(conn, found, "ScheduleDeleted", by, {"name": found.name})


def _check(catalog: DefinitionCatalog, schedule: Schedule) -> None:
    """422 naming the field when the schedule could not fire as given."""
    try:
        schedule.timing.check()
    except TimingError as exc:
        raise InvalidInput(str(exc), errors=[{"loc": ["body", exc.field], "msg": str(exc),
                                              "type": "schedule.timing"}]) from None  # fmt: skip
    try:
        definition = catalog.get(schedule.workflow_name, schedule.workflow_version)
    except NotFound as exc:
        error = {"loc": ["body", "workflow_name"], "msg": str(exc),
                 "type": "schedule.unknown_workflow"}  # fmt: skip
        raise InvalidInput(str(exc), errors=[error]) from None
    check_input(definition, schedule.data)


def _next(schedule: Schedule, now: datetime) -> datetime | None:
    return None if schedule.paused else schedule.timing.first_at_or_after(now)


def _described(schedule: Schedule) -> dict[str, Any]:
    """What the events say of a schedule (its spec, not its firing state)."""
    return {
        "name": schedule.name, "workflow_name": schedule.workflow_name,
        "workflow_version": schedule.workflow_version, "data": schedule.data,
        "cron": schedule.cron, "timezone": schedule.timezone,
        "interval_seconds": schedule.interval_seconds,
        "start_at": None if schedule.start_at is None else schedule.start_at.isoformat(),
        "end_at": None if schedule.end_at is None else schedule.end_at.isoformat(),
        "catch_up": schedule.catch_up.value, "priority": schedule.priority,
        "paused": schedule.paused,
    }  # fmt: skip


async def _record(
    conn: AsyncConnection, schedule: Schedule, event_type: str, by: Actor, data: dict[str, Any]
) -> None:
    await record(
        conn, tenant_id=schedule.tenant_id, aggregate_type=AGGREGATE,
        aggregate_id=str(schedule.id), event_type=event_type, actor=by.actor, origin=by.origin,
        data=data,
    )  # fmt: skip
