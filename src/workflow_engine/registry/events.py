"""The facts the registry appends to the event log, on each service's aggregate."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth.audit import RequestOrigin, record
from workflow_engine.registry.status import ServiceStatus

AGGREGATE = "services"
CHECKER_ACTOR = "system:registry-checker"
NO_REQUEST = RequestOrigin(client_address=None, correlation_id=None)


async def record_service_event(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    service_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    actor: str = CHECKER_ACTOR,
    origin: RequestOrigin = NO_REQUEST,
) -> None:
    await record(
        conn,
        tenant_id=tenant_id,
        aggregate_type=AGGREGATE,
        aggregate_id=str(service_id),
        event_type=event_type,
        actor=actor,
        origin=origin,
        data=data,
    )


async def record_status_change(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    service_id: uuid.UUID,
    name: str,
    before: ServiceStatus,
    after: ServiceStatus,
    reason: str,
    actor: str = CHECKER_ACTOR,
    origin: RequestOrigin = NO_REQUEST,
) -> None:
    await record_service_event(
        conn,
        tenant_id=tenant_id,
        service_id=service_id,
        event_type="ServiceStatusChanged",
        data={"name": name, "from": before.value, "to": after.value, "reason": reason},
        actor=actor,
        origin=origin,
    )
