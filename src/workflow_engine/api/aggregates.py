"""`GET /api/v1/aggregates`: the tenant's aggregates, from the catalogue read model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from workflow_engine.api.context import EventStoreDep
from workflow_engine.api.events import AGGREGATE_TYPE
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import require
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.events.catalogue import AggregateSummary

router = resource_router(tags=["events"])


class AggregateView(BaseModel):
    aggregate_type: str
    aggregate_id: str
    version: int
    last_event_type: str
    last_position: int
    created_at: datetime
    updated_at: datetime


@router.get("/api/v1/aggregates", summary="The tenant's aggregates, by id")
async def list_aggregates(
    principal: Annotated[Principal, require(Permission.events_read)],
    store: EventStoreDep,
    aggregate_type: Annotated[str | None, Query(pattern=AGGREGATE_TYPE)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AggregateView]:
    key = decode_cursor(cursor, aggregate_id=str)
    found = await store.list_aggregates(
        principal.tenant_id,
        aggregate_type=aggregate_type,
        after_id=key["aggregate_id"] if key else None,
        limit=limit + 1,
    )
    return page_of(found, limit, _view, lambda row: {"aggregate_id": row.aggregate_id})


def _view(row: AggregateSummary) -> AggregateView:
    return AggregateView.model_validate(row, from_attributes=True)
