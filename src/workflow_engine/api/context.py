"""What request handlers may reach: the settings, the services, the process's counters.

Created once by `create_app` and stored on `app.state`; handlers get pieces of it through the
dependency functions below, never through module globals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from workflow_engine.api.client_address import ClientAddresses
from workflow_engine.bootstrap import ServiceBootstrapManager
from workflow_engine.bootstrap.core_services import DatabaseService, EventStoreService
from workflow_engine.bootstrap.engine_services import WorkflowCatalogService
from workflow_engine.config import Settings
from workflow_engine.db import Database
from workflow_engine.engine.approval_service import ApprovalService
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.deltas import DeltaHub, hub_for
from workflow_engine.engine.run_waiter import RunWaiter
from workflow_engine.engine.runs import RunService
from workflow_engine.events import EventStore
from workflow_engine.events.tail import LogTail
from workflow_engine.observability.request_stats import RequestStats

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    services: ServiceBootstrapManager
    clients: ClientAddresses
    stats: RequestStats = field(default_factory=RequestStats)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    _by_name: dict[str, object] = field(default_factory=dict, init=False, repr=False)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    def service(self, name: str, kind: type[T]) -> T:
        service = self._by_name.get(name)
        if service is None:  # a request looks several up: the manager's list is scanned once
            service = self._by_name[name] = self.services.get(name)
        if not isinstance(service, kind):
            raise TypeError(f"service {name!r} is a {type(service).__name__}, not {kind.__name__}")
        return service


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


# Each dependency below reads the context from the request itself rather than depending on
# `Context`: FastAPI pays a few microseconds for every node of a request's dependency tree,
# cached or not, so a flat tree answers sooner than a chain.


async def get_context(request: Request) -> AppContext:
    return context_of(request)


Context = Annotated[AppContext, Depends(get_context)]


async def get_database(request: Request) -> Database:
    return context_of(request).service("database", DatabaseService).database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_log_tail(request: Request) -> LogTail:
    return context_of(request).service("events", EventStoreService).tail


LogTailDep = Annotated[LogTail, Depends(get_log_tail)]


async def get_deltas(request: Request) -> DeltaHub:
    return hub_for(context_of(request).service("database", DatabaseService).database)


DeltasDep = Annotated[DeltaHub, Depends(get_deltas)]


async def get_event_store(request: Request) -> EventStore:
    return context_of(request).service("events", EventStoreService).store


EventStoreDep = Annotated[EventStore, Depends(get_event_store)]


async def get_catalog(request: Request) -> DefinitionCatalog:
    return context_of(request).service("workflows", WorkflowCatalogService).catalog


CatalogDep = Annotated[DefinitionCatalog, Depends(get_catalog)]


def run_service(context: AppContext) -> RunService:
    return RunService(
        context.service("database", DatabaseService).database,
        context.service("workflows", WorkflowCatalogService).catalog,
        capped=context.settings.max_running_per_tenant is not None,
    )


async def get_runs(request: Request) -> RunService:
    return run_service(context_of(request))


RunsDep = Annotated[RunService, Depends(get_runs)]


async def get_run_waiter(request: Request, runs: RunsDep) -> RunWaiter:
    return RunWaiter(runs, context_of(request).service("events", EventStoreService).tail)


RunWaiterDep = Annotated[RunWaiter, Depends(get_run_waiter)]


async def get_approvals(db: DatabaseDep) -> ApprovalService:
    return ApprovalService(db)


ApprovalsDep = Annotated[ApprovalService, Depends(get_approvals)]
