"""Health and uptime: `/health` (liveness), `/health/detailed` (readiness), `/api/v1/uptime`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api.context import Context, context_of
from workflow_engine.api.routing import resource_router
from workflow_engine.bootstrap import HealthStatus, ServiceReport
from workflow_engine.version import __version__

router = resource_router(tags=["health"])


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ok", "version": "0.1.0", "uptime_seconds": 42.1}]
        }
    )

    status: HealthStatus = Field(description="Always `ok` when the process answers.")
    version: str
    uptime_seconds: float


class ServiceHealth(BaseModel):
    name: str
    required: bool = Field(description="A required service that is down makes the server 503.")
    status: HealthStatus
    latency_ms: float = Field(description="How long its health check took.")
    detail: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class DetailedHealthResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "down",
                    "version": "0.1.0",
                    "uptime_seconds": 3600.5,
                    "checked_at": "2026-11-26T10:00:00Z",
                    "failing": ["database"],
                    "services": [
                        {
                            "name": "database",
                            "required": True,
                            "status": "down",
                            "latency_ms": 2001.3,
                            "detail": "no answer within 2 s",
                            "data": {},
                        }
                    ],
                }
            ]
        }
    )

    status: HealthStatus = Field(
        description="`down` (HTTP 503) when a required service is down; `degraded` when an "
        "optional one is down or any is degraded; else `ok`."
    )
    version: str
    uptime_seconds: float
    checked_at: datetime
    failing: list[str] = Field(description="Names of the services that are not `ok`.")
    services: list[ServiceHealth]


class LatencySummary(BaseModel):
    p50: float | None = Field(description="Median, in milliseconds (within 10%).")
    p95: float | None = Field(description="95th percentile, in milliseconds (within 10%).")


class UptimeResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "started_at": "2026-11-26T09:00:00Z",
                    "uptime_seconds": 3723.0,
                    "uptime": "1 hour, 2 minutes, 3 seconds",
                    "requests_served": 1520,
                    "errors": 0,
                    "latency_ms": {"p50": 1.9, "p95": 7.4},
                }
            ]
        }
    )

    started_at: datetime
    uptime_seconds: float
    uptime: str = Field(description="The uptime in words.")
    requests_served: int
    errors: int = Field(description="Responses with a 5xx status since start.")
    latency_ms: LatencySummary


@router.get("/health", summary="Liveness: the process answers", response_model=HealthResponse)
async def health(request: Request) -> Response:
    # Probes call this every few seconds: no dependency to solve (FastAPI pays for each), and
    # the document encoded once rather than validated again against the response model.
    body = HealthResponse(
        status=HealthStatus.ok,
        version=__version__,
        uptime_seconds=round(context_of(request).uptime_seconds(), 3),
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.get(
    "/health/detailed",
    summary="Readiness: every service's health",
    response_model=DetailedHealthResponse,
    responses={503: {"model": DetailedHealthResponse, "description": "A required service is down"}},
)
async def health_detailed(context: Context) -> JSONResponse:
    reports = await context.services.check_health()
    status = overall_status(reports)
    body = DetailedHealthResponse(
        status=status,
        version=__version__,
        uptime_seconds=round(context.uptime_seconds(), 3),
        checked_at=datetime.now(UTC),
        failing=[r.name for r in reports if r.status is not HealthStatus.ok],
        services=[_public(ServiceHealth.model_validate(r, from_attributes=True)) for r in reports],
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if status is HealthStatus.down else 200
    )


# What services report for operators that this page, answered to anyone, leaves out: where
# files live on the host, and the host's name and process ids (the worker's lease owner).
_PRIVATE_DATA = frozenset({"path", "owner"})


def _public(service: ServiceHealth) -> ServiceHealth:
    if _PRIVATE_DATA.isdisjoint(service.data):
        return service
    data = {k: v for k, v in service.data.items() if k not in _PRIVATE_DATA}
    return service.model_copy(update={"data": data})


def overall_status(reports: list[ServiceReport]) -> HealthStatus:
    if any(r.required and r.status is HealthStatus.down for r in reports):
        return HealthStatus.down
    if any(r.status is not HealthStatus.ok for r in reports):
        return HealthStatus.degraded
    return HealthStatus.ok


@router.get("/api/v1/uptime", summary="Uptime and request statistics since start")
async def uptime(context: Context) -> UptimeResponse:
    seconds = context.uptime_seconds()
    snapshot = context.stats.snapshot()
    return UptimeResponse(
        started_at=context.started_at,
        uptime_seconds=round(seconds, 3),
        uptime=in_words(seconds),
        requests_served=snapshot.requests,
        errors=snapshot.errors,
        latency_ms=LatencySummary(p50=snapshot.p50_ms, p95=snapshot.p95_ms),
    )


def in_words(seconds: float) -> str:
    """`93784` → `1 day, 2 hours, 3 minutes, 4 seconds`."""
    remaining = int(seconds)
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return ", ".join(parts) or "0 seconds"


# HEAD answers like GET (load balancers and uptime checkers use it); not a separate operation
# in the OpenAPI document.
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/health/detailed", health_detailed, methods=["HEAD"], include_in_schema=False)
