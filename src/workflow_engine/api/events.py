"""Event sourcing over HTTP: `POST /events` (the seed's path), an aggregate's events, and the
tenant's audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api import pagination
from workflow_engine.api.context import DatabaseDep, DeltasDep, EventStoreDep, LogTailDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.api.sse import EventStreamResponse
from workflow_engine.api.streams import GuardDep, event_stream
from workflow_engine.api.validation import Moment
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.errors import Forbidden, InvalidInput, NotFound
from workflow_engine.events.client_events import append_client_event
from workflow_engine.events.follower import LogFollower
from workflow_engine.events.store import (
    RecordedEvent,
)
from workflow_engine.schemas.events import AppendedEvent, EventView

router = resource_router(tags=["events"])

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
AGGREGATE_TYPE = r"^[a-z][a-z0-9_.-]{0,99}$"
AGGREGATE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$"
EVENT_TYPE = r"^[A-Za-z][A-Za-z0-9_.:-]{0,199}$"
# Event types the server writes. On a client's own aggregate they would still read as the
# engine's or the audit trail's own facts (`?event_type=LoginSucceeded`, a stream filtered on
# `Workflow`), so a client may not use them; compared without case, as a reader might.
SERVER_EVENT_TYPES = frozenset(
    name.lower()
    for name in (
        *RunEvent,
        "TenantCreated", "UserCreated", "UserChanged", "UserDeactivated", "UserReactivated",
        "LoginSucceeded", "LoginFailed", "LoggedOut", "RefreshTokenReused",
        "ApiKeyCreated", "ApiKeyRevoked",
        "ScheduleCreated", "ScheduleUpdated", "SchedulePaused", "ScheduleResumed",
        "ScheduleDeleted", "ScheduleTickFailed", "ScheduleTicksMissed",
        "ServiceRegistered", "ServiceRegistrationUpdated", "ServiceDeregistered",
        "ServiceStatusChanged", "ServiceRemoved",
    )
)  # fmt: skip


class NewEventRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "aggregate_type": "order",
                    "aggregate_id": "order-1042",
                    "event_type": "OrderPlaced",
                    "data": {"items": 3, "total": "59.90"},
                    "metadata": {"channel": "web"},
                    "expected_version": 0,
                }
            ]
        },
    )

    aggregate_type: str = Field(pattern=AGGREGATE_TYPE, description="Lower-case name.")
    aggregate_id: str = Field(pattern=AGGREGATE_ID)
    event_type: str = Field(pattern=EVENT_TYPE)
    data: dict[str, Any]
    metadata: dict[str, Any] | None = Field(
        None,
        description="Yours to use; `actor`, `client_address`, `correlation_id` and "
        "`source` are set by the server.",
    )
    expected_version: int | None = Field(
        None, ge=0, le=INT32_MAX,
        description="The version you last saw (0: the aggregate must be new). A mismatch is 409.",
    )  # fmt: skip


def _view(event: RecordedEvent) -> EventView:
    return EventView.model_validate(event, from_attributes=True)


@router.post(
    "/events",
    status_code=201,
    summary="Append an event to one of your aggregates",
    responses={409: {"description": "expected_version is not the aggregate's version"}},
)
async def append_event(
    body: NewEventRequest,
    principal: Annotated[Principal, require(Permission.events_append)],
    db: DatabaseDep,
    origin: Origin,
    response: Response,
) -> AppendedEvent:
    if body.event_type.lower() in SERVER_EVENT_TYPES:
        raise Forbidden(
            f"event type {body.event_type!r} is written by the server only; "
            "choose another name for your own events"
        )
    recorded = await append_client_event(
        db,
        tenant_id=principal.tenant_id,
        actor=principal.actor,
        origin=origin,
        aggregate_type=body.aggregate_type,
        aggregate_id=body.aggregate_id,
        event_type=body.event_type,
        data=body.data,
        metadata=body.metadata,
        expected_version=body.expected_version,
    )
    response.headers["Location"] = f"/api/v1/events/{recorded.aggregate_id}"
    return AppendedEvent(
        event_id=recorded.event_id,
        aggregate_id=recorded.aggregate_id,
        version=recorded.version,
        position=recorded.position,
        recorded_at=recorded.recorded_at,
    )


@router.get("/api/v1/events", summary="The tenant's audit trail, filtered")
async def audit_trail(
    principal: Annotated[Principal, require(Permission.audit_read)],
    store: EventStoreDep,
    event_type: Annotated[str | None, Query(pattern=EVENT_TYPE)] = None,
    aggregate_type: Annotated[str | None, Query(pattern=AGGREGATE_TYPE)] = None,
    actor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@-]{1,100}$")] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    after: Annotated[int, Query(ge=0, le=INT64_MAX, description="A position.")] = 0,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[EventView]:
    key = decode_cursor(cursor, position=int)
    start = int(key["position"]) if key else after
    if since and until and since >= until:
        raise InvalidInput("`since` must be before `until`")
    found = await store.search(
        principal.tenant_id, event_type=event_type, aggregate_type=aggregate_type, actor=actor,
        since=since, until=until, after_position=start, limit=limit + 1,
    )  # fmt: skip
    return page_of(found, limit, _view, lambda event: {"position": event.position})


@router.get(
    "/api/v1/events/stream",
    summary="Server-sent events: the tenant's events as they are appended",
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An endless stream"}},
)
async def stream_events(
    principal: Annotated[Principal, require(Permission.events_read)],
    store: EventStoreDep,
    tail: LogTailDep,
    guard: GuardDep,
    deltas: DeltasDep,
    after: Annotated[
        int | None, Query(ge=0, le=INT64_MAX, description="Resume after this position.")
    ] = None,
    aggregate_id: Annotated[str | None, Query(pattern=AGGREGATE_ID)] = None,
    aggregate_type: Annotated[str | None, Query(pattern=AGGREGATE_TYPE)] = None,
    event_type_prefix: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^\d{1,19}$")
    ] = None,
) -> EventStreamResponse:
    """Each message: `id` = the event's position, `event` = its type, `data` = the event as
    JSON. Reconnecting with `Last-Event-ID` (or `?after=`) resumes exactly after that event,
    however old. Without either, the stream starts at the present. A comment every 15 s keeps
    idle connections open through proxies. The stream ends, with a last `closed` message, when
    the credential it was opened with expires or is revoked.

    Unless filtered by `event_type_prefix` or to another aggregate type than `runs`, the stream
    also shows the text of running steps that stream it (`llm.chat` with `stream: true`) as
    `delta` messages with no `id`: `{run_id, step_id, attempt, seq, text}`. They are not
    events, are never stored, and are not replayed on resuming."""
    start = int(last_event_id) if last_event_id is not None else after
    if start is not None and start > INT64_MAX:
        raise InvalidInput("Last-Event-ID is beyond any position")
    run = _run_id(aggregate_id)
    shows_deltas = (
        event_type_prefix is None
        and aggregate_type in (None, RUN_AGGREGATE)
        and (aggregate_id is None or run is not None)
    )
    follow = LogFollower(
        store, tail, principal.tenant_id, start,
        aggregate_id=aggregate_id, aggregate_type=aggregate_type, type_prefix=event_type_prefix,
        deltas=deltas if shows_deltas else None, delta_run=run,
    )  # fmt: skip
    return event_stream(guard, principal, follow.stream)


def _run_id(aggregate_id: str | None) -> uuid.UUID | None:
    """The run an aggregate id names, if it is one (a run's aggregate id is its id)."""
    try:
        run = None if aggregate_id is None else uuid.UUID(aggregate_id)
    except ValueError:
        return None
    return run if str(run) == aggregate_id else None  # as the run's events name it


@router.get(
    "/api/v1/events/{aggregate_id}",
    summary="An aggregate's events, in order",
    response_model=Page[EventView],
)
async def aggregate_events(
    aggregate_id: Annotated[str, Path(pattern=AGGREGATE_ID)],
    principal: Annotated[Principal, require(Permission.events_read)],
    store: EventStoreDep,
    from_version: Annotated[int, Query(ge=1, le=INT32_MAX)] = 1,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    key = decode_cursor(cursor, version=int)
    start = int(key["version"]) + 1 if key else from_version
    page = await store.aggregate_page(
        principal.tenant_id, aggregate_id, from_version=start, limit=limit
    )
    if page is None:
        raise NotFound(f"no aggregate {aggregate_id!r}")
    next_cursor = (
        None if page.next_key is None else pagination.encode_cursor({"version": page.next_key})
    )
    return pagination.page_response(page.items, next_cursor)
