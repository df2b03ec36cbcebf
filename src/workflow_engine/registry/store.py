"""The registry's SQL: every statement on `services`, `service_tags` and `service_checks`
lives here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import service_checks, service_tags, services
from workflow_engine.db.upsert import upsert
from workflow_engine.registry.probe import ProbeResult
from workflow_engine.registry.status import ServiceStatus, Standing


@dataclass(frozen=True)
class RegisteredService:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    url: str
    health_check_url: str | None
    metadata: dict[str, Any]
    tags: list[str]
    ttl_seconds: int | None
    status: ServiceStatus
    consecutive_successes: int
    consecutive_failures: int
    last_check_at: datetime | None
    last_check_latency_ms: float | None
    last_check_error: str | None
    last_heartbeat_at: datetime | None
    last_alive_at: datetime
    next_check_at: datetime | None
    status_changed_at: datetime
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> RegisteredService:
        values = dict(row._mapping)
        values["status"] = ServiceStatus(values["status"])
        return cls(**values)

    @property
    def standing(self) -> Standing:
        return Standing(self.status, self.consecutive_successes, self.consecutive_failures)


def standing_values(standing: Standing) -> dict[str, Any]:
    return {
        "status": standing.status.value,
        "consecutive_successes": standing.successes,
        "consecutive_failures": standing.failures,
    }


def check_values(result: ProbeResult, now: datetime, interval: float) -> dict[str, Any]:
    """The columns one probe result sets (the next check is due an interval later)."""
    values: dict[str, Any] = {
        "last_check_at": now,
        "last_check_latency_ms": result.latency_ms,
        "last_check_error": result.error,
        "next_check_at": now + timedelta(seconds=interval),
    }
    if result.passed:
        values["last_alive_at"] = now
    return values


async def insert_service(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert a registration; False (nothing written) when one with the same tenant, name
    and URL exists — a concurrent registration won the race."""
    inserted = await conn.execute(
        upsert(conn, services)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[services.c.tenant_id, services.c.name, services.c.url]
        )
        .returning(services.c.id)
    )
    if inserted.first() is None:
        return False
    await _write_tags(conn, values["id"], values["tenant_id"], values["tags"])
    return True


async def count_services(conn: AsyncConnection, tenant_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(services).where(services.c.tenant_id == tenant_id)
    return int((await conn.execute(stmt)).scalar_one())


async def update_service(
    conn: AsyncConnection, service: RegisteredService, values: dict[str, Any]
) -> None:
    await conn.execute(update(services).where(services.c.id == service.id).values(**values))
    if "tags" in values and values["tags"] != service.tags:
        await conn.execute(delete(service_tags).where(service_tags.c.service_id == service.id))
        await _write_tags(conn, service.id, service.tenant_id, values["tags"])


async def _write_tags(
    conn: AsyncConnection, service_id: uuid.UUID, tenant_id: uuid.UUID, tags: Iterable[str]
) -> None:
    rows = [{"service_id": service_id, "tag": tag, "tenant_id": tenant_id} for tag in tags]
    if rows:
        await conn.execute(insert(service_tags), rows)


async def delete_service(conn: AsyncConnection, service_id: uuid.UUID) -> None:
    # Tags and checks first: SQLite enforces the cascade only where foreign keys are on.
    await conn.execute(delete(service_tags).where(service_tags.c.service_id == service_id))
    await conn.execute(delete(service_checks).where(service_checks.c.service_id == service_id))
    await conn.execute(delete(services).where(services.c.id == service_id))


@dataclass(frozen=True)
class CheckRecord:
    checked_at: datetime
    passed: bool
    status: ServiceStatus
    latency_ms: float | None
    error: str | None


async def record_check(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    service_id: uuid.UUID,
    result: ProbeResult,
    *,
    at: datetime,
    status: ServiceStatus,
    keep: int,
) -> None:
    """Add a check to the service's history, then delete the checks older than its `keep`
    newest: an index range from the boundary down, about one row per check (checks made at
    the very same instant as the boundary stay, a harmless extra)."""
    await conn.execute(
        insert(service_checks).values(
            id=uuid.uuid4(), tenant_id=tenant_id, service_id=service_id, checked_at=at,
            passed=result.passed, status=status.value, latency_ms=result.latency_ms,
            error=result.error,
        )
    )  # fmt: skip
    oldest_kept = (
        select(service_checks.c.checked_at)
        .where(service_checks.c.service_id == service_id)
        .order_by(service_checks.c.checked_at.desc())
        .offset(keep - 1)
        .limit(1)
        .scalar_subquery()
    )
    await conn.execute(
        delete(service_checks).where(
            service_checks.c.service_id == service_id, service_checks.c.checked_at < oldest_kept
        )
    )


async def list_checks(
    conn: AsyncConnection, tenant_id: uuid.UUID, service_id: uuid.UUID, limit: int
) -> list[CheckRecord]:
    """The service's newest checks, newest first."""
    stmt = (
        select(
            service_checks.c.checked_at, service_checks.c.passed, service_checks.c.status,
            service_checks.c.latency_ms, service_checks.c.error,
        )
        .where(service_checks.c.tenant_id == tenant_id, service_checks.c.service_id == service_id)
        .order_by(service_checks.c.checked_at.desc(), service_checks.c.id.desc())
        .limit(limit)
    )  # fmt: skip
    return [
        CheckRecord(row.checked_at, row.passed, ServiceStatus(row.status), row.latency_ms,
                    row.error)
        for row in await conn.execute(stmt)
    ]  # fmt: skip


async def find(
    conn: AsyncConnection, tenant_id: uuid.UUID, name: str, url: str
) -> RegisteredService | None:
    """The registration of `name` at `url`, locked for this transaction."""
    stmt = (
        select(services)
        .where(services.c.tenant_id == tenant_id, services.c.name == name, services.c.url == url)
        .with_for_update()
    )
    row = (await conn.execute(stmt)).first()
    return RegisteredService.from_row(row) if row else None


async def get(
    conn: AsyncConnection, tenant_id: uuid.UUID, service_id: uuid.UUID, *, for_update: bool = False
) -> RegisteredService | None:
    stmt = select(services).where(services.c.tenant_id == tenant_id, services.c.id == service_id)
    if for_update:
        stmt = stmt.with_for_update()  # SQLite: the write transaction already excludes others
    row = (await conn.execute(stmt)).first()
    return RegisteredService.from_row(row) if row else None


async def list_services(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    name: str | None = None,
    status: ServiceStatus | None = None,
    tag: str | None = None,
    after: tuple[str, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[RegisteredService]:
    """The tenant's services ordered by name then id, after the (name, id) key `after`."""
    stmt = select(services).where(services.c.tenant_id == tenant_id)
    if name is not None:
        stmt = stmt.where(services.c.name == name)
    if status is not None:
        stmt = stmt.where(services.c.status == status.value)
    if tag is not None:
        tagged = select(service_tags.c.service_id).where(
            service_tags.c.tenant_id == tenant_id, service_tags.c.tag == tag
        )
        stmt = stmt.where(services.c.id.in_(tagged))
    if after is not None:
        after_name, after_id = after
        stmt = stmt.where(
            (services.c.name > after_name)
            | ((services.c.name == after_name) & (services.c.id > after_id))
        )
    stmt = stmt.order_by(services.c.name, services.c.id).limit(limit)
    return [RegisteredService.from_row(row) for row in await conn.execute(stmt)]


async def count_by_status(conn: AsyncConnection, tenant_id: uuid.UUID | None) -> dict[str, int]:
    """How many services have each status: one tenant's, or all of them (`None`)."""
    stmt = select(services.c.status, func.count()).group_by(services.c.status)
    if tenant_id is not None:
        stmt = stmt.where(services.c.tenant_id == tenant_id)
    counts = {status.value: 0 for status in ServiceStatus}
    counts.update((status, count) for status, count in await conn.execute(stmt))
    return counts


async def healthy_instances(
    conn: AsyncConnection, tenant_id: uuid.UUID, name: str
) -> list[RegisteredService]:
    stmt = (
        select(services)
        .where(
            services.c.tenant_id == tenant_id,
            services.c.name == name,
            services.c.status == ServiceStatus.healthy.value,
        )
        .order_by(services.c.registered_at, services.c.id)
    )
    return [RegisteredService.from_row(row) for row in await conn.execute(stmt)]


# The checker's statements span tenants: it runs on a connection that row-level security
# does not confine (pitfall 3 in docs/architecture.md).


async def due_for_check(
    conn: AsyncConnection, now: datetime, limit: int
) -> list[RegisteredService]:
    stmt = (
        select(services)
        .where(services.c.next_check_at.is_not(None), services.c.next_check_at <= now)
        .order_by(services.c.next_check_at)
        .limit(limit)
    )
    return [RegisteredService.from_row(row) for row in await conn.execute(stmt)]


async def lock_many(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[RegisteredService]:
    """The services with these ids still registered, locked for this transaction."""
    if not ids:
        return []
    stmt = select(services).where(services.c.id.in_(ids)).order_by(services.c.id).with_for_update()
    return [RegisteredService.from_row(row) for row in await conn.execute(stmt)]


async def with_ttl(conn: AsyncConnection) -> list[RegisteredService]:
    """Services the expiry sweep looks at (only those with a TTL can expire)."""
    stmt = select(services).where(services.c.ttl_seconds.is_not(None)).order_by(services.c.id)
    return [RegisteredService.from_row(row) for row in await conn.execute(stmt)]
