"""`create_app(settings)`: the FastAPI application with its middleware, routers and services.

This is the Python form of the seed's "Basic Server Setup": an embedding application can call
it, add its own routers or services, and serve the result with `workflow_engine.server.serve`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI

from workflow_engine.api import (
    aggregates,
    api_keys,
    approvals,
    auth,
    docs,
    events,
    health,
    jwks,
    metrics,
    registry,
    runs,
    schedules,
    usage,
    users,
    workflows,
)
from workflow_engine.api.client_address import ClientAddresses
from workflow_engine.api.context import AppContext
from workflow_engine.api.cors import CORSProblemMiddleware
from workflow_engine.api.edge import EdgeMiddleware
from workflow_engine.api.guard import GuardMiddleware
from workflow_engine.api.problems import install_problem_handlers
from workflow_engine.api.routing import mount, operation_id
from workflow_engine.bootstrap import ServiceBootstrapManager
from workflow_engine.bootstrap.core_services import (
    AuthServiceProvider,
    DatabaseService,
    DataDirectoryService,
    EventStoreService,
    MigrationsService,
    RateLimiterService,
)
from workflow_engine.bootstrap.engine_services import WorkerService, WorkflowCatalogService
from workflow_engine.bootstrap.lifecycle import ServiceBootstrapManagerBuilder, ServiceSpec
from workflow_engine.config import Settings
from workflow_engine.demo.services import DemoServices
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.events.seals import EventSealer
from workflow_engine.events.upcasting import Upcasters
from workflow_engine.mcp_server import MCPEndpoint
from workflow_engine.observability import metrics as process_metrics
from workflow_engine.observability import tracing
from workflow_engine.observability.access_log import RouteTable
from workflow_engine.process_gc import frozen_after_startup
from workflow_engine.registry.checker import HealthChecker
from workflow_engine.registry.options import RegistryOptions
from workflow_engine.schedules.ticker import ScheduleTicker
from workflow_engine.ui import routes as ui
from workflow_engine.version import __version__

logger = structlog.get_logger(__name__)

DESCRIPTION = """\
A REST API server that runs AI workflows durably.

Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`
documents; every response carries an `X-Correlation-ID` header.
"""

#: The routers of the public API, in the order the OpenAPI document lists them. Fixed paths
#: come before parameterised ones within each router.
routers: tuple[APIRouter, ...] = (
    health.router,
    metrics.router,
    api_keys.router,  # before auth: its fixed paths must win over any parameterised ones
    auth.router,
    users.router,
    events.router,
    aggregates.router,
    workflows.router,
    runs.router,
    usage.router,  # after workflows: its `/templates/{name}` must win
    approvals.router,
    schedules.router,
    registry.router,
    jwks.router,
    docs.router,
    ui.router,  # the dashboard: not documented, mounted when UI_ENABLED
)

#: The same routers in the order a request is matched against them. A request is tried against
#: each route in turn, at a microsecond or two a route: the ones most requests are for
#: come first (a run's status read tried some 30 routes before its own). A router moves ahead of
#: another only where no request could match a route in both (`tests/unit/test_app_routes.py`
#: checks): `workflows`' fixed `/templates` paths stay ahead of `runs`' `/{workflow_id}/...`,
#: `api_keys` ahead of `auth`.
matching_order: tuple[APIRouter, ...] = (
    health.router,
    workflows.router,
    runs.router,
    usage.router,
    approvals.router,
    events.router,
    aggregates.router,
    metrics.router,  # scraped every few seconds, not per request
    api_keys.router,
    auth.router,
    users.router,
    schedules.router,
    registry.router,
    jwks.router,
    docs.router,
    ui.router,  # pages are loaded once per visit; their API calls are what repeats
)


def mounted_routers(settings: Settings, order: Sequence[APIRouter]) -> tuple[APIRouter, ...]:
    """The routers of `order` this server mounts: the dashboard's only when it is on."""
    return tuple(router for router in order if settings.ui_enabled or router is not ui.router)


def core_services(
    settings: Settings,
    upcasters: Upcasters | None = None,
    workflows: Sequence[WorkflowDefinition | dict[str, Any]] = (),
) -> ServiceBootstrapManagerBuilder:
    """The services every server process runs, as a builder an embedder can extend."""
    database = DatabaseService(settings)
    catalog = WorkflowCatalogService(settings, workflows)
    builder = (
        ServiceBootstrapManager.builder()
        .add_service("data_dir", DataDirectoryService(settings.data_dir), required=False)
        .add_service("database", database)
        .add_service("migrations", MigrationsService(database), depends_on=["database"])
        .add_service(
            "events",
            EventStoreService(database, upcasters, snapshot_every=settings.snapshot_every),
            depends_on=["database"],
        )
        .add_service("auth", AuthServiceProvider(settings, database), depends_on=["events"])
        .add_service("rate_limiter", RateLimiterService(settings))
        .add_service("workflows", catalog)
        .add_service(
            "registry",
            HealthChecker(database, RegistryOptions.from_settings(settings)),
            depends_on=["events", "migrations"],
            required=False,
        )
    )
    builder.add_service(
        "event_sealer",
        EventSealer(database, settings.event_seal_interval),
        depends_on=["events", "migrations"],
    )
    builder.add_service(
        "schedules",
        ScheduleTicker(database, catalog, capped=settings.max_running_per_tenant is not None),
        depends_on=["events", "migrations", "workflows"],
    )
    if settings.worker_enabled:
        # After the catalog: it imports NODE_MODULES, the node types the worker runs.
        builder.add_service(
            "worker",
            WorkerService(settings, database, catalog),
            depends_on=["events", "migrations", "workflows"],
        )
    return builder


def create_app(
    settings: Settings,
    *,
    services: Sequence[ServiceSpec] = (),
    upcasters: Upcasters | None = None,
    workflows: Sequence[WorkflowDefinition | dict[str, Any]] = (),
) -> FastAPI:
    """Build the application. `services` are added after the core ones (they may depend on
    them); `upcasters` turn old event versions into current ones as they are read;
    `workflows` are definitions registered next to the templates and `WORKFLOWS_DIR`."""
    tracing_state = tracing.setup(settings.tracing_enabled)
    builder = core_services(settings, upcasters, workflows)
    demo = (
        DemoServices(settings.data_dir, settings.host) if settings.demo_services_enabled else None
    )
    if demo is not None:
        builder.add_service("demo_services", demo, required=False)
    mcp = MCPEndpoint(settings) if settings.mcp_server_enabled else None
    if mcp is not None:
        # Stopped before what its tools call.
        builder.add_service(
            "mcp_server", mcp, depends_on=["auth", "workflows", "events"], required=False
        )
    for spec in services:
        builder.add_service(
            spec.name, spec.service, depends_on=spec.depends_on, required=spec.required
        )
    context = AppContext(
        settings=settings,
        services=builder.build(),
        clients=ClientAddresses(settings.trusted_proxies),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await context.services.start_all()
        logger.info(tracing_state)
        if settings.is_production and settings.metrics_enabled and not settings.metrics_token:
            logger.warning("/metrics is public: set METRICS_TOKEN, or keep the port private")
        try:
            with frozen_after_startup():
                yield
        finally:
            await context.services.stop_all()
            process_metrics.process_exiting()
            tracing.flush()

    app = FastAPI(
        title="workflow-engine",
        version=__version__,
        lifespan=lifespan,
        openapi_url=docs.OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,  # for an embedding app's own routers
        # FastAPI's own OpenTelemetry hooks look for configured providers on every request;
        # with our tracing off there are none to find, and the looking costs ~5 us a request.
        telemetry=None if tracing.is_on() else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.context = context
    mount(app, mounted_routers(settings, matching_order))
    if demo is not None:
        demo.mount_on(app)
    if mcp is not None:
        mcp.mount_on(app, context)
    install_problem_handlers(app)
    tracing.instrument_app(app)
    docs.install_openapi(
        app,
        title="workflow-engine API",
        description=DESCRIPTION,
        order=mounted_routers(settings, routers),
    )
    _add_middleware(app, context)
    return app


def _add_middleware(app: FastAPI, context: AppContext) -> None:
    settings = context.settings
    # Added innermost first: the last one added sees the request first. Two layers of ours (and
    # CORS between them when configured) rather than one per concern: each layer costs every
    # request a call and a wrapped `send`.
    # Inside CORS, so that a 500 and a 429 carry the CORS headers and a browser can read them;
    # it limits the rate before the body is read, so a throttled upload is never received.
    app.add_middleware(GuardMiddleware, context=context, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSProblemMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Correlation-ID"],
            expose_headers=["X-Correlation-ID", "Retry-After", "Location"],
            max_age=600,
        )
    # Outermost, so that every answer — a 500, a 413, a refused preflight — carries the
    # correlation id and security headers, and is logged and counted.
    app.add_middleware(
        EdgeMiddleware,
        stats=context.stats,
        routes=RouteTable(mounted_routers(settings, routers)),
        hsts=settings.is_production,
    )
