"""`workflow-engine worker`: a worker process of its own on the server's database.

It imports `NODE_MODULES`, claims and runs steps like the embedded worker, and on SIGTERM or
SIGINT stops claiming, lets running steps finish within `SHUTDOWN_TIMEOUT`, gives back what is
still running (another worker takes it at once) and exits 0. With `WORKER_METRICS_PORT` it
serves its metrics (steps, LLM and MCP calls it made) on that port, on `HOST`, behind
`METRICS_TOKEN` when one is set.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import TYPE_CHECKING

import structlog

from workflow_engine.bootstrap.engine_services import build_worker, catalog_of
from workflow_engine.bootstrap.read_models import register_read_models
from workflow_engine.config import Settings
from workflow_engine.db import Database
from workflow_engine.observability import metrics, tracing
from workflow_engine.process_gc import frozen_after_startup

if TYPE_CHECKING:
    from workflow_engine.engine.catalog import DefinitionCatalog

logger = structlog.get_logger(__name__)


async def run_worker(settings: Settings, catalog: DefinitionCatalog | None = None) -> int:
    """Work until SIGTERM or SIGINT; `catalog`: the workflows as the CLI checked them already
    (built from the settings when not given)."""
    if settings.worker_metrics_port is not None and metrics.multiprocess():
        # Its samples would be summed into the API's /metrics and scraped here as well.
        logger.error(
            "give the worker either WORKER_METRICS_PORT or the API's PROMETHEUS_MULTIPROC_DIR, "
            "not both: it would be counted twice"
        )
        return 2
    logger.info(tracing.setup(settings.tracing_enabled))
    register_read_models()
    db = Database(
        settings.effective_database_url,
        pool_size=settings.db_max_connections,
        pool_timeout=settings.db_connection_timeout,
        connect_timeout=settings.db_connection_timeout,
    )
    tracing.instrument_engine(db.engine.sync_engine)
    worker = build_worker(settings, db, catalog if catalog is not None else catalog_of(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stop_metrics = None
    try:
        if settings.metrics_enabled and settings.worker_metrics_port is not None:
            # Its own target for Prometheus: a worker's counters live in its process.
            token = settings.metrics_token
            try:
                stop_metrics = metrics.serve_in_thread(
                    settings.host,
                    settings.worker_metrics_port,
                    None if token is None else token.get_secret_value(),
                )
            except OSError as exc:
                logger.error(
                    "the worker's metrics port cannot be opened",
                    port=settings.worker_metrics_port, error=str(exc),
                )  # fmt: skip
                return 2
            logger.info(
                "worker metrics", url=f"http://{settings.host}:{settings.worker_metrics_port}/"
            )
        await worker.start()
        logger.info("worker started", owner=worker.owner, concurrency=settings.worker_concurrency)
        with frozen_after_startup():
            gc.enable()  # paused by the CLI while the worker started
            await stop.wait()
        logger.info("worker stopping", running=worker.running)
        await worker.stop(grace=settings.shutdown_timeout)
    finally:
        if stop_metrics is not None:
            stop_metrics()
        await db.dispose()
        tracing.flush()
    logger.info("worker stopped")
    return 0
