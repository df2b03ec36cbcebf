"""`/api/v1/registry`: the service registry (register, list, read, check history, heartbeat,
deregister)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from workflow_engine.api.context import Context, DatabaseDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_name_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.api.validation import StorableText
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.errors import NotFound
from workflow_engine.events.storable import check_document
from workflow_engine.registry import service as registry
from workflow_engine.registry import store
from workflow_engine.registry.checker import HealthChecker
from workflow_engine.registry.status import ServiceStatus
from workflow_engine.registry.store import RegisteredService
from workflow_engine.schemas.registry import (
    LastCheck,
    RegistryHealth,
    ServiceCheck,
    ServiceCheckList,
    ServiceHealthView,
    ServiceView,
)

router = resource_router(prefix="/api/v1/registry", tags=["registry"])
Reader = Annotated[Principal, require(Permission.registry_read)]
Writer = Annotated[Principal, require(Permission.registry_write)]

MAX_METADATA_BYTES = 16 * 1024
Name = Annotated[
    StorableText, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.:-]*$")
]
Tag = Annotated[StorableText, Field(min_length=1, max_length=64, pattern=r"^[\w.:/=-]+$")]
URL = Annotated[StorableText, Field(min_length=1, max_length=2048)]


class ServiceRegistration(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "service_name": "my-service",
                    "service_url": "http://localhost:3000",
                    "health_check_url": "http://localhost:3000/health",
                    "metadata": {"version": "1.0.0"},
                }
            ]
        },
    )

    service_name: Name = Field(description="Instances of one service share a name.")
    service_url: URL = Field(description="Where the instance serves; http or https.")
    health_check_url: URL | None = Field(
        None, description="Probed every check interval; any 2xx answer passes."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description='Free-form; `{"protocol": "mcp"}` makes the instance discoverable by '
        "`mcp.call` steps naming the service.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    ttl_seconds: StrictInt | None = Field(
        None, ge=1, le=7 * 24 * 3600,
        description="Expire the instance when neither a heartbeat nor a passing check is seen "
        "for this long. Required without a health_check_url.",
    )  # fmt: skip

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_document("metadata", value)
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return value

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


def _last_check(service: RegisteredService) -> LastCheck | None:
    if service.last_check_at is None:
        return None
    return LastCheck(
        at=service.last_check_at,
        latency_ms=service.last_check_latency_ms,
        error=service.last_check_error,
    )


def _view(service: RegisteredService) -> ServiceView:
    return ServiceView(
        id=service.id,
        service_name=service.name,
        service_url=service.url,
        health_check_url=service.health_check_url,
        metadata=service.metadata,
        tags=service.tags,
        ttl_seconds=service.ttl_seconds,
        status=service.status,
        consecutive_failures=service.consecutive_failures,
        consecutive_successes=service.consecutive_successes,
        last_check=_last_check(service),
        last_heartbeat_at=service.last_heartbeat_at,
        status_changed_at=service.status_changed_at,
        registered_at=service.registered_at,
        updated_at=service.updated_at,
    )


def _checker(context: Context) -> HealthChecker:
    return context.service("registry", HealthChecker)


@router.post(
    "/register",
    status_code=201,
    summary="Register a service instance (the same name and URL again updates it)",
    responses={200: {"model": ServiceView, "description": "An existing registration updated"}},
)
async def register_service(
    body: ServiceRegistration,
    writer: Writer,
    db: DatabaseDep,
    context: Context,
    origin: Origin,
    response: Response,
) -> ServiceView:
    registration = registry.Registration(
        name=body.service_name,
        url=body.service_url,
        health_check_url=body.health_check_url,
        metadata=body.metadata,
        tags=body.tags,
        ttl_seconds=body.ttl_seconds,
    )
    service, created = await registry.register(
        db, _checker(context).options, registration,
        tenant_id=writer.tenant_id, actor=writer.actor, origin=origin,
    )  # fmt: skip
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/v1/registry/services/{service.id}"
    return _view(service)


@router.get("/services", summary="List registered services")
async def list_services(
    reader: Reader,
    db: DatabaseDep,
    name: Annotated[StorableText | None, Query(max_length=100)] = None,
    status: ServiceStatus | None = None,
    tag: Annotated[StorableText | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ServiceView]:
    after = decode_name_cursor(cursor)
    async with db.tenant_read(reader.tenant_id) as conn:
        found = await store.list_services(
            conn, reader.tenant_id, name=name, status=status, tag=tag, after=after,
            limit=limit + 1,
        )  # fmt: skip
    return page_of(found, limit, _view, lambda s: {"name": s.name, "id": str(s.id)})


@router.get("/services/{service_id}", summary="One registered service")
async def get_service(service_id: uuid.UUID, reader: Reader, db: DatabaseDep) -> ServiceView:
    async with db.tenant_read(reader.tenant_id) as conn:
        service = await store.get(conn, reader.tenant_id, service_id)
    if service is None:
        raise NotFound("no such service")
    return _view(service)


MAX_CHECKS = 500


@router.get(
    "/services/{service_id}/checks",
    summary="A service's latest health checks, newest first",
    description="The registry keeps each service's newest `REGISTRY_CHECK_HISTORY` checks "
    "(100 unless configured): its registration's probe and the checker's.",
)
async def service_checks(
    service_id: uuid.UUID,
    reader: Reader,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CHECKS, description="Checks to return.")] = 100,
) -> ServiceCheckList:
    async with db.tenant_read(reader.tenant_id) as conn:
        service = await store.get(conn, reader.tenant_id, service_id)
        if service is None:
            raise NotFound("no such service")
        checks = await store.list_checks(conn, reader.tenant_id, service_id, limit)
    return ServiceCheckList(
        items=[
            ServiceCheck(checked_at=c.checked_at, passed=c.passed, status=c.status,
                         latency_ms=c.latency_ms, error=c.error)
            for c in checks
        ]
    )  # fmt: skip


@router.post(
    "/services/{service_id}/heartbeat",
    summary="Say the instance is alive (resets its TTL)",
)
async def heartbeat(
    service_id: uuid.UUID, writer: Writer, db: DatabaseDep, origin: Origin
) -> ServiceView:
    service = await registry.heartbeat(
        db, tenant_id=writer.tenant_id, service_id=service_id, actor=writer.actor, origin=origin
    )
    return _view(service)


@router.delete("/deregister/{service_id}", status_code=204, summary="Deregister an instance")
async def deregister_service(
    service_id: uuid.UUID, writer: Writer, db: DatabaseDep, origin: Origin
) -> Response:
    await registry.deregister(
        db, tenant_id=writer.tenant_id, service_id=service_id, actor=writer.actor, origin=origin
    )
    return Response(status_code=204)


@router.get("/health", summary="Health of the tenant's registered services")
async def registry_health(reader: Reader, db: DatabaseDep, context: Context) -> RegistryHealth:
    async with db.tenant_read(reader.tenant_id) as conn:
        totals = await store.count_by_status(conn, reader.tenant_id)
        services = await store.list_services(conn, reader.tenant_id, limit=1000)
    registered = sum(totals.values())
    healthy = totals[ServiceStatus.healthy]
    status = "ok" if healthy == registered else "down" if healthy == 0 else "degraded"
    return RegistryHealth(
        status=status,
        totals={ServiceStatus(k): v for k, v in totals.items()},
        check_interval_seconds=_checker(context).options.check_interval,
        services=[
            ServiceHealthView(
                id=s.id,
                service_name=s.name,
                status=s.status,
                last_check=_last_check(s),
                consecutive_failures=s.consecutive_failures,
                last_heartbeat_at=s.last_heartbeat_at,
            )
            for s in services
        ],
    )
