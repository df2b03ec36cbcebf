"""The health checker: a lifecycle service that probes registered services and expires them.

Every process runs one; only the leader (see `db.leadership`) works. Each round it reads the
services whose check is due, probes them concurrently with no database connection held (the
pool is small: pitfall 12 in docs/architecture.md), then records the results in one short
transaction that re-reads each row under lock — a heartbeat or a deregistration that happened
meanwhile is respected — and adds each to its service's check history. Then it expires
services whose TTL ran out and removes those expired for longer than the grace period.
Requests never wait for any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.db import Database
from workflow_engine.db.leadership import Leadership
from workflow_engine.registry import store
from workflow_engine.registry.events import record_service_event, record_status_change
from workflow_engine.registry.options import RegistryOptions
from workflow_engine.registry.probe import ProbeResult, new_client, probe
from workflow_engine.registry.status import ServiceStatus, Standing, after_check, has_expired

if TYPE_CHECKING:
    import httpx

logger = structlog.get_logger(__name__)

ROUND_SIZE = 200  # services probed per round at most; the rest, due longest, come next
CONCURRENT_PROBES = 50


class HealthChecker:
    def __init__(self, database: DatabaseService, options: RegistryOptions) -> None:
        self._database = database
        self.options = options
        self._leadership: Leadership | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.last_round_at: datetime | None = None
        self._next_sweep = 0.0
        self._client: httpx.AsyncClient | None = None

    @property
    def tick(self) -> float:
        """How often the loop looks for due work: often enough that no service waits much
        beyond its interval, rarely enough to cost nothing."""
        return max(0.1, min(1.0, self.options.check_interval / 4))

    async def start(self) -> None:
        self._leadership = Leadership(self._database.database, "registry-checker")
        self._task = asyncio.create_task(self._run(), name="registry-checker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._leadership is not None:
            await self._leadership.resign()

    async def check_health(self) -> Health:
        if self._task is None or self._task.done():
            return Health.down("not running")
        db = self._database.database
        async with db.read() as conn:
            counts = await store.count_by_status(conn, None)
        leading = self._leadership is not None and self._leadership.leading
        data: dict[str, Any] = {"leader": leading, "services": counts}
        if self.last_round_at is not None:
            data["last_round_at"] = self.last_round_at.isoformat()
        troubled = counts[ServiceStatus.unhealthy] + counts[ServiceStatus.expired]
        if troubled:
            return Health.degraded(f"{troubled} registered service(s) unhealthy or expired",
                                   **data)  # fmt: skip
        return Health.ok(**data)

    async def _run(self) -> None:
        assert self._leadership is not None
        try:
            while True:
                try:
                    if await self._leadership.lead():
                        await self.run_round()
                except Exception:
                    logger.exception("registry check round failed")
                await asyncio.sleep(self.tick)
        finally:
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    def _http(self) -> httpx.AsyncClient:
        # Made for the first probe: its TLS context (the CA bundle, parsed) and the HTTP
        # machinery cost about 2.5 MB that a server with no health check to run never needs.
        if self._client is None:
            self._client = new_client()
        return self._client

    async def run_round(self) -> None:
        db = self._database.database
        now = datetime.now(UTC)
        async with db.read() as conn:
            due = await store.due_for_check(conn, now, ROUND_SIZE)
        if due:
            results = await self._probe_all(self._http(), due)
            await _record_checks(db, results, self.options)
        if time.monotonic() >= self._next_sweep:  # TTLs need no finer grain than checks
            self._next_sweep = time.monotonic() + self.options.check_interval
            await _expire_and_remove(db, self.options)
        self.rounds += 1
        self.last_round_at = datetime.now(UTC)

    async def _probe_all(
        self, client: httpx.AsyncClient, due: Sequence[store.RegisteredService]
    ) -> dict[uuid.UUID, tuple[str, ProbeResult]]:
        limit = asyncio.Semaphore(CONCURRENT_PROBES)

        async def one(service: store.RegisteredService) -> tuple[str, ProbeResult]:
            url = service.health_check_url
            assert url is not None
            async with limit:
                return url, await probe(client, url, self.options.policy,
                                        self.options.check_timeout)  # fmt: skip

        started = time.perf_counter()
        results = await asyncio.gather(*(one(service) for service in due))
        logger.debug("probed services", count=len(due),
                     seconds=round(time.perf_counter() - started, 3))  # fmt: skip
        return {service.id: result for service, result in zip(due, results, strict=True)}


async def _record_checks(
    db: Database, results: dict[uuid.UUID, tuple[str, ProbeResult]], options: RegistryOptions
) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        for service in await store.lock_many(conn, list(results)):
            url, result = results[service.id]
            if service.health_check_url != url:
                continue  # re-registered with another health check since the probe started
            standing = after_check(service.standing, result.passed, options.thresholds)
            values = {
                **store.check_values(result, now, options.check_interval),
                **store.standing_values(standing),
            }
            if standing.status is not service.status:
                values["status_changed_at"] = now
                await record_status_change(
                    conn, tenant_id=service.tenant_id, service_id=service.id, name=service.name,
                    before=service.status, after=standing.status, reason=result.summary,
                )  # fmt: skip
                logger.info("service status changed", service=service.name,
                            service_id=str(service.id), status=standing.status.value,
                            reason=result.summary)  # fmt: skip
            await store.update_service(conn, service, values)
            await store.record_check(
                conn, service.tenant_id, service.id, result,
                at=now, status=standing.status, keep=options.check_history,
            )  # fmt: skip


async def _expire_and_remove(db: Database, options: RegistryOptions) -> None:
    """Find, without locks, the services whose TTL ran out or whose grace period ended;
    then lock just those and look again (a heartbeat may have come in between)."""
    now = datetime.now(UTC)
    async with db.read() as conn:
        candidates = [s.id for s in await store.with_ttl(conn) if _sweep_action(s, now, options)]
    if not candidates:
        return
    async with db.transaction() as conn:
        for service in await store.lock_many(conn, candidates):
            action = _sweep_action(service, now, options)
            if action == "remove":
                await store.delete_service(conn, service.id)
                await record_service_event(
                    conn, tenant_id=service.tenant_id, service_id=service.id,
                    event_type="ServiceRemoved",
                    data={"name": service.name, "url": service.url,
                          "reason": f"expired for over {options.expired_grace:g} s"},
                )  # fmt: skip
                logger.info("expired service removed", service=service.name,
                            service_id=str(service.id))  # fmt: skip
            elif action == "expire":
                expired = Standing(ServiceStatus.expired)
                await store.update_service(conn, service, {
                    **store.standing_values(expired), "status_changed_at": now, "updated_at": now,
                })  # fmt: skip
                await record_status_change(
                    conn, tenant_id=service.tenant_id, service_id=service.id, name=service.name,
                    before=service.status, after=ServiceStatus.expired,
                    reason=f"no heartbeat or passing check for {service.ttl_seconds} s",
                )  # fmt: skip
                logger.info("service expired", service=service.name, service_id=str(service.id))


def _sweep_action(
    service: store.RegisteredService, now: datetime, options: RegistryOptions
) -> str | None:
    if service.status is ServiceStatus.expired:
        grace = timedelta(seconds=options.expired_grace)
        return "remove" if now - service.status_changed_at > grace else None
    if has_expired(service.ttl_seconds, service.last_alive_at, now):
        return "expire"
    return None
