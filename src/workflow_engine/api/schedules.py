"""`/api/v1/schedules`: workflows started on a cron expression or an interval."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from workflow_engine.api.context import CatalogDep, DatabaseDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_name_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.api.validation import Moment, StorableText
from workflow_engine.auth.audit import RequestOrigin
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.errors import InvalidInput
from workflow_engine.events.storable import check_document
from workflow_engine.schedules import service, store
from workflow_engine.schedules.store import Schedule
from workflow_engine.schedules.timing import CatchUp

router = resource_router(prefix="/api/v1/schedules", tags=["schedules"])
Reader = Annotated[Principal, require(Permission.schedules_read)]
Writer = Annotated[Principal, require(Permission.schedules_write)]

Name = Annotated[
    StorableText, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.:-]*$")
]
WorkflowName = Annotated[StorableText, Field(min_length=1, max_length=64)]
Cron = Annotated[
    StorableText,
    Field(min_length=1, max_length=200, description="Five fields: minute hour day month weekday."),
]
TimeZone = Annotated[
    StorableText,
    Field(min_length=1, max_length=64, description="An IANA time zone, e.g. `Europe/Paris`."),
]
Interval = Annotated[
    StrictInt | StrictFloat, Field(ge=1, le=366 * 86400, description="Seconds between ticks.")
]
Priority = Annotated[StrictInt, Field(ge=-100, le=100)]
CATCH_UP = (
    "What ticks missed while no server ran (or more than their grace late) do: `skip` starts "
    "nothing for them, `run_once` starts one run for the last of them."
)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "name": "nightly-digest", "workflow_name": "knowledge_base",
            "data": {"question": "What changed yesterday?"}, "cron": "0 6 * * *",
            "timezone": "Europe/Paris", "catch_up": "run_once",
        }]},
    )  # fmt: skip

    name: Name = Field(description="Unique in the tenant.")
    workflow_name: WorkflowName
    workflow_version: StrictInt | None = Field(None, ge=1, description="The latest if left out.")
    data: dict[str, Any] = Field(default_factory=dict, description="Each run's input.")
    cron: Cron | None = None
    timezone: TimeZone = "UTC"
    interval_seconds: Interval | None = Field(None, description="Instead of `cron`.")
    start_at: Moment | None = Field(None, description="No tick before it.")
    end_at: Moment | None = Field(None, description="No tick at or after it.")
    catch_up: CatchUp = Field(CatchUp.skip, description=CATCH_UP)
    priority: Priority = 0
    paused: bool = False


class ScheduleChange(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    workflow_name: WorkflowName | None = None
    workflow_version: StrictInt | None = Field(None, ge=1)
    data: dict[str, Any] | None = None
    cron: Cron | None = None
    timezone: TimeZone | None = None
    interval_seconds: Interval | None = None
    start_at: Moment | None = None
    end_at: Moment | None = None
    catch_up: CatchUp | None = None
    priority: Priority | None = None
    paused: bool | None = Field(None, description="`true` pauses, `false` resumes.")


# Fields a change may set back to null (the others must keep a value).
_NULLABLE = frozenset({"workflow_version", "cron", "interval_seconds", "start_at", "end_at"})


class ScheduleLinks(BaseModel):
    self: str
    runs: str = Field(description="The runs of its workflow.")


class ScheduleView(BaseModel):
    id: uuid.UUID
    name: str
    workflow_name: str
    workflow_version: int | None
    data: dict[str, Any]
    cron: str | None
    timezone: str
    interval_seconds: float | None
    start_at: datetime | None
    end_at: datetime | None
    catch_up: CatchUp
    priority: int
    paused: bool
    next_fire_times: list[datetime] = Field(
        description="The next ticks (up to five); empty while paused or when none remain."
    )
    last_fired_at: datetime | None
    last_run_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    links: ScheduleLinks


def _view(schedule: Schedule) -> ScheduleView:
    return ScheduleView(
        id=schedule.id, name=schedule.name, workflow_name=schedule.workflow_name,
        workflow_version=schedule.workflow_version, data=schedule.data, cron=schedule.cron,
        timezone=schedule.timezone, interval_seconds=schedule.interval_seconds,
        start_at=schedule.start_at, end_at=schedule.end_at, catch_up=schedule.catch_up,
        priority=schedule.priority, paused=schedule.paused,
        next_fire_times=schedule.timing.upcoming(schedule.next_fire_at),
        last_fired_at=schedule.last_fired_at, last_run_id=schedule.last_run_id,
        created_by=schedule.created_by, created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        links=ScheduleLinks(self=f"/api/v1/schedules/{schedule.id}",
                            runs=f"/api/v1/workflows?workflow_name={schedule.workflow_name}"),
    )  # fmt: skip


def _by(principal: Principal, origin: RequestOrigin) -> service.Actor:
    return service.Actor(principal.tenant_id, principal.actor, origin)


@router.post("", status_code=201, summary="Create a schedule")
async def create_schedule(
    body: ScheduleCreate,
    writer: Writer,
    db: DatabaseDep,
    catalog: CatalogDep,
    origin: Origin,
    response: Response,
) -> ScheduleView:
    """Its workflow and input are checked now (422 naming the field); the first tick is the
    first at or after now (and `start_at`)."""
    check_document("data", body.data)
    schedule = await service.create(db, catalog, body.model_dump(), _by(writer, origin))
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return _view(schedule)


@router.get("", summary="List the tenant's schedules")
async def list_schedules(
    reader: Reader,
    db: DatabaseDep,
    workflow_name: Annotated[StorableText | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ScheduleView]:
    after = decode_name_cursor(cursor)
    async with db.tenant_read(reader.tenant_id) as conn:
        found = await store.list_schedules(conn, reader.tenant_id, workflow_name=workflow_name,
                                           after=after, limit=limit + 1)  # fmt: skip
    return page_of(found, limit, _view, lambda s: {"name": s.name, "id": str(s.id)})


@router.get("/{schedule_id}", summary="One schedule, with its next fire times")
async def get_schedule(schedule_id: uuid.UUID, reader: Reader, db: DatabaseDep) -> ScheduleView:
    return _view(await service.get(db, reader.tenant_id, schedule_id))


@router.patch("/{schedule_id}", summary="Change, pause or resume a schedule")
async def change_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleChange,
    writer: Writer,
    db: DatabaseDep,
    catalog: CatalogDep,
    origin: Origin,
) -> ScheduleView:
    """Giving `cron` drops `interval_seconds` and the other way round. Resuming, or changing
    when ticks fall, fires next at the first tick from now: ticks while paused do not count
    as missed."""
    changes = body.model_dump(exclude_unset=True)
    cleared = [name for name, value in changes.items() if value is None and name not in _NULLABLE]
    if cleared:
        raise InvalidInput(
            f"{', '.join(cleared)} cannot be null",
            errors=[{"loc": ["body", name], "msg": "cannot be null", "type": "null"}
                    for name in cleared],
        )  # fmt: skip
    if "data" in changes:
        check_document("data", changes["data"])
    schedule = await service.change(db, catalog, schedule_id, changes, _by(writer, origin))
    return _view(schedule)


@router.delete("/{schedule_id}", status_code=204, summary="Delete a schedule")
async def delete_schedule(
    schedule_id: uuid.UUID, writer: Writer, db: DatabaseDep, origin: Origin
) -> Response:
    """Runs it started are not touched."""
    await service.delete(db, schedule_id, _by(writer, origin))
    return Response(status_code=204)
