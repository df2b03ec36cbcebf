"""Registered services as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.registry.status import ServiceStatus


class LastCheck(BaseModel):
    at: datetime
    latency_ms: float | None
    error: str | None = Field(description="Why it failed; null when it passed.")


class ServiceCheck(BaseModel):
    """One health check of a service, as its history keeps it."""

    checked_at: datetime
    passed: bool = Field(description="Whether the health check URL answered 2xx in time.")
    status: ServiceStatus = Field(description="The service's status after this check.")
    latency_ms: float | None = Field(
        description="How long the probe took, until its answer or its failure."
    )
    error: str | None = Field(description="Why it failed; null when it passed.")


class ServiceCheckList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "checked_at": "2026-12-06T10:00:10Z",
                            "passed": True,
                            "status": "healthy",
                            "latency_ms": 12.5,
                            "error": None,
                        },
                        {
                            "checked_at": "2026-12-06T10:00:00Z",
                            "passed": False,
                            "status": "healthy",
                            "latency_ms": 5000.0,
                            "error": "timed out",
                        },
                    ]
                }
            ]
        }
    )

    items: list[ServiceCheck] = Field(description="Newest first.")


class ServiceView(BaseModel):
    id: uuid.UUID
    service_name: str
    service_url: str
    health_check_url: str | None
    metadata: dict[str, Any]
    tags: list[str]
    ttl_seconds: int | None
    status: ServiceStatus
    consecutive_failures: int
    consecutive_successes: int
    last_check: LastCheck | None
    last_heartbeat_at: datetime | None
    status_changed_at: datetime
    registered_at: datetime
    updated_at: datetime


class ServiceHealthView(BaseModel):
    id: uuid.UUID
    service_name: str
    status: ServiceStatus
    last_check: LastCheck | None
    consecutive_failures: int
    last_heartbeat_at: datetime | None


class RegistryHealth(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "degraded",
                    "totals": {"healthy": 3, "unhealthy": 1, "unknown": 0, "expired": 0},
                    "check_interval_seconds": 10.0,
                    "services": [],
                }
            ]
        }
    )

    status: str = Field(
        description="`ok` when every service is healthy (or none is registered), `degraded` "
        "when some are not, `down` when none is healthy."
    )
    totals: dict[ServiceStatus, int]
    check_interval_seconds: float
    services: list[ServiceHealthView]
