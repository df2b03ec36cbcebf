"""What the registry API does: register, heartbeat, deregister, read.

Registration checks both URLs against the network policy (resolving names now) and probes
the health check URL once, so that a URL that redirects — possibly to an address the policy
refuses — is refused at the door with the reason, and a new service starts with a known
status instead of waiting for the checker's next round.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workflow_engine.auth.audit import RequestOrigin
from workflow_engine.db import Database
from workflow_engine.errors import Conflict, InvalidInput, NotFound
from workflow_engine.net.addresses import RefusedURL, http_url, without_credentials
from workflow_engine.registry import store
from workflow_engine.registry.events import record_service_event, record_status_change
from workflow_engine.registry.options import RegistryOptions
from workflow_engine.registry.probe import ProbeResult, new_client, probe
from workflow_engine.registry.status import (
    ServiceStatus,
    Standing,
    after_check,
    after_heartbeat,
)
from workflow_engine.registry.store import RegisteredService

MAX_SERVICES_PER_TENANT = 1000  # the checker's work is shared: no tenant may crowd it


@dataclass(frozen=True)
class Registration:
    name: str
    url: str
    health_check_url: str | None
    metadata: dict[str, Any]
    tags: list[str]
    ttl_seconds: int | None


async def register(
    db: Database,
    options: RegistryOptions,
    registration: Registration,
    *,
    tenant_id: uuid.UUID,
    actor: str,
    origin: RequestOrigin,
) -> tuple[RegisteredService, bool]:
    """Register a service, or update the one with the same name and URL. Returns it and
    whether it was created."""
    await _check_url("service_url", registration.url, options)
    first_check: ProbeResult | None = None
    if registration.health_check_url is not None:
        await _check_url("health_check_url", registration.health_check_url, options)
        async with new_client() as client:
            first_check = await probe(
                client, registration.health_check_url, options.policy, options.check_timeout
            )
        if first_check.redirect_to is not None:
            await _refuse_redirect(first_check.redirect_to, registration.health_check_url, options)
    elif registration.ttl_seconds is None:
        raise InvalidInput(
            "a service needs a health_check_url, a ttl_seconds (and heartbeats), or both",
            errors=[_error("ttl_seconds", "required when there is no health_check_url", "missing")],
        )
    if (
        registration.health_check_url is not None
        and registration.ttl_seconds is not None
        and registration.ttl_seconds < options.check_interval
    ):
        # Passing checks come only once an interval: such a TTL would expire a healthy
        # service between two of them.
        message = f"must be at least the check interval ({options.check_interval:g} s)"
        raise InvalidInput(
            f"ttl_seconds {message}", errors=[_error("ttl_seconds", message, "too_short")]
        )

    now = datetime.now(UTC)
    described = {
        "name": registration.name,
        "url": registration.url,
        "health_check_url": registration.health_check_url,
        "metadata": registration.metadata,
        "tags": registration.tags,
        "ttl_seconds": registration.ttl_seconds,
    }
    async with db.tenant_transaction(tenant_id) as conn:
        existing = await store.find(conn, tenant_id, registration.name, registration.url)
        standing = Standing(ServiceStatus.unknown)
        values: dict[str, Any] = {
            **{k: v for k, v in described.items() if k not in ("name", "url")},
            "last_alive_at": now,
            "updated_at": now,
        }
        if first_check is not None:
            standing = after_check(standing, first_check.passed, options.thresholds)
            values.update(store.check_values(first_check, now, options.check_interval))
        elif registration.ttl_seconds is not None:
            standing = after_heartbeat(standing, health_checked=False)  # registering is a sign
            values.update(last_heartbeat_at=now, next_check_at=None)
        values.update(store.standing_values(standing))
        created = False
        if existing is None:
            if await store.count_services(conn, tenant_id) >= MAX_SERVICES_PER_TENANT:
                raise Conflict(f"the tenant has {MAX_SERVICES_PER_TENANT} registered services, "
                               "the most it may have; deregister some first")  # fmt: skip
            service_id = uuid.uuid4()
            created = await store.insert_service(conn, {
                **values, "id": service_id, "tenant_id": tenant_id, "name": registration.name,
                "url": registration.url, "registered_at": now, "status_changed_at": now,
            })  # fmt: skip
            if not created:  # registered meanwhile by a concurrent request: update that one
                existing = await store.find(conn, tenant_id, registration.name, registration.url)
                assert existing is not None
        before = existing.status if existing else ServiceStatus.unknown
        if created:
            event_type = "ServiceRegistered"
        else:
            assert existing is not None
            service_id = existing.id
            if standing.status is not existing.status:
                values["status_changed_at"] = now
            await store.update_service(conn, existing, values)
            event_type = "ServiceRegistrationUpdated"
        await record_service_event(conn, tenant_id=tenant_id, service_id=service_id,
                                   event_type=event_type, data=described, actor=actor,
                                   origin=origin)  # fmt: skip
        if standing.status is not before:
            reason = "registered" if first_check is None else first_check.summary
            await record_status_change(conn, tenant_id=tenant_id, service_id=service_id,
                                       name=registration.name, before=before,
                                       after=standing.status, reason=reason, actor=actor,
                                       origin=origin)  # fmt: skip
        if first_check is not None:
            await store.record_check(
                conn, tenant_id, service_id, first_check,
                at=now, status=standing.status, keep=options.check_history,
            )  # fmt: skip
        service = await store.get(conn, tenant_id, service_id)
    assert service is not None
    return service, created


async def heartbeat(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    service_id: uuid.UUID,
    actor: str,
    origin: RequestOrigin,
) -> RegisteredService:
    now = datetime.now(UTC)
    async with db.tenant_transaction(tenant_id) as conn:
        service = await store.get(conn, tenant_id, service_id, for_update=True)
        if service is None:
            raise NotFound("no such service")
        standing = after_heartbeat(service.standing, service.health_check_url is not None)
        values: dict[str, Any] = {
            **store.standing_values(standing), "last_heartbeat_at": now, "last_alive_at": now,
            "updated_at": now,
        }  # fmt: skip
        if standing.status is not service.status:
            values["status_changed_at"] = now
            if service.health_check_url is not None:
                values["next_check_at"] = now  # revived: its health is due now
            await record_status_change(conn, tenant_id=tenant_id, service_id=service.id,
                                       name=service.name, before=service.status,
                                       after=standing.status, reason="heartbeat", actor=actor,
                                       origin=origin)  # fmt: skip
        await store.update_service(conn, service, values)
        updated = await store.get(conn, tenant_id, service_id)
    assert updated is not None
    return updated


async def deregister(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    service_id: uuid.UUID,
    actor: str,
    origin: RequestOrigin,
) -> None:
    async with db.tenant_transaction(tenant_id) as conn:
        service = await store.get(conn, tenant_id, service_id, for_update=True)
        if service is None:
            raise NotFound("no such service")
        await store.delete_service(conn, service.id)
        await record_service_event(
            conn, tenant_id=tenant_id, service_id=service.id, event_type="ServiceDeregistered",
            data={"name": service.name, "url": service.url}, actor=actor, origin=origin,
        )  # fmt: skip


def _error(field: str, message: str, kind: str = "refused_url") -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": kind}


async def _check_url(field: str, url: str, options: RegistryOptions) -> None:
    try:
        await options.policy.addresses(http_url(url))
    except RefusedURL as exc:
        raise InvalidInput(f"{field} is refused: {exc}", errors=[_error(field, str(exc))]) from None


async def _refuse_redirect(location: str, url: str, options: RegistryOptions) -> None:
    import httpx  # a redirect was met: httpx is loaded already

    try:
        target = str(httpx.URL(url).join(location))
        await options.policy.addresses(http_url(target))
    except (RefusedURL, httpx.InvalidURL, ValueError) as exc:
        message = f"it redirects to {without_credentials(location)}, which is refused: {exc}"
    else:
        shown = without_credentials(target)
        message = f"it redirects to {shown}; redirects are not followed, register that URL"
    raise InvalidInput(f"health_check_url is refused: {message}",
                       errors=[_error("health_check_url", message)])  # fmt: skip
