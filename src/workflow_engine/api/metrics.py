"""`/metrics`: Prometheus's exposition format, this process's (or every server process's)
counters plus facts read from the database at scrape time."""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime

import structlog
from fastapi import Request, Response
from prometheus_client.core import Metric

from workflow_engine.api.context import Context, DatabaseDep
from workflow_engine.api.routing import resource_router
from workflow_engine.db import Database
from workflow_engine.engine import queue, runs
from workflow_engine.errors import NotFound, Unauthorized
from workflow_engine.observability import metrics
from workflow_engine.registry import store as registry_store

router = resource_router(tags=["monitoring"])
logger = structlog.get_logger(__name__)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain; version=0.0.4": {}}}},
)
async def prometheus_metrics(request: Request, context: Context, db: DatabaseDep) -> Response:
    """Public unless `METRICS_TOKEN` is set; 404 when `METRICS_ENABLED=false`."""
    settings = context.settings
    if not settings.metrics_enabled:
        raise NotFound("metrics are disabled (METRICS_ENABLED=false)")
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        # Headers arrive decoded as latin-1: back to their bytes, a UTF-8 token compares.
        given = request.headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(given, expected.encode()):
            raise Unauthorized("/metrics needs Authorization: Bearer <METRICS_TOKEN>")
    facts = await _database_facts(db)
    # Reading every process's sample files is file I/O: not on the event loop.
    text = await asyncio.to_thread(metrics.render, facts)
    return Response(text, media_type=metrics.CONTENT_TYPE)


async def _database_facts(db: Database) -> list[Metric]:
    """Gauges of the whole installation, the same whichever process is scraped. A database
    that does not answer leaves them out (and says so in `database_facts_up`): the
    process's own metrics are still worth scraping."""
    up = metrics.gauge("workflow_engine_database_facts_up", "Whether the gauges below were read.")
    try:
        async with db.read() as conn:
            depth = await queue.depth(conn)
            active = await runs.count_active(conn)
            services = await registry_store.count_by_status(conn, None)
    except Exception as exc:
        logger.warning("metrics could not read the database", error=type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    tasks = metrics.gauge("workflow_queue_tasks", "Step tasks in the queue by state.", ["state"])
    for state in ("ready", "scheduled", "leased"):
        tasks.add_metric([state], getattr(depth, state))
    oldest = metrics.gauge(
        "workflow_queue_oldest_ready_age_seconds",
        "How long the oldest ready task has waited for a worker (0 when none waits).",
    )
    waited = 0.0
    if depth.oldest_ready_at is not None:
        waited = max((datetime.now(UTC) - depth.oldest_ready_at).total_seconds(), 0.0)
    oldest.add_metric([], waited)
    going = metrics.gauge("workflow_runs_active", "Runs not yet ended, by status.", ["status"])
    for status, count in active.items():
        going.add_metric([status], count)
    registered = metrics.gauge(
        "registry_services", "Registered services by status (all tenants).", ["status"]
    )
    for status, count in services.items():
        registered.add_metric([status], count)
    return [up, tasks, oldest, going, registered]
