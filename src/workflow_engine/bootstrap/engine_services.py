"""The workflow engine's services: the definition catalog and the embedded worker."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.config import Settings
from workflow_engine.db import Database
from workflow_engine.engine.catalog import DefinitionCatalog, build_catalog
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.worker import Worker, WorkerOptions
from workflow_engine.integrations.llm.providers import llm_settings
from workflow_engine.integrations.mcp import MCPClients, mcp_server_configs
from workflow_engine.nodes import registry
from workflow_engine.nodes.registry import NodeSettings
from workflow_engine.registry.discovery import RegistryDiscovery
from workflow_engine.registry.options import RegistryOptions
from workflow_engine.usage.budgets import Budgets
from workflow_engine.usage.database_meter import DatabaseMeter

if TYPE_CHECKING:
    # Only the embedded worker's service takes it: core_services brings in the whole of
    # authentication (JWT, cryptography, argon2), which a standalone worker never uses.
    from workflow_engine.bootstrap.core_services import DatabaseService


def worker_options(settings: Settings) -> WorkerOptions:
    """A worker configured as the settings say (embedded or standalone alike)."""
    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        lease=timedelta(seconds=settings.worker_lease_seconds),
        node_settings=NodeSettings(
            http_allowed_hosts=tuple(settings.http_allowed_hosts),
            http_max_response_bytes=settings.http_max_response_bytes,
            llm=llm_settings(settings),
        ),
        env={name: os.environ[name] for name in settings.workflow_env if name in os.environ},
        max_claims=settings.worker_max_claims,
        max_running_per_tenant=settings.max_running_per_tenant,
        tenant_weights=dict(settings.tenant_weights),
    )


def build_worker(settings: Settings, db: Database, catalog: DefinitionCatalog) -> Worker:
    """A worker as the settings say, with the resources its nodes use: MCP sessions to the
    configured servers (and the demo services when they are on), reused across steps, and
    servers not configured looked up in the service registry, within its network policy;
    the workflows its `workflow` steps start; and its meter of LLM calls, with the daily
    budgets."""
    servers = mcp_server_configs(
        settings, demo_base=settings.demo_base_url if settings.demo_services_enabled else None
    )
    policy = RegistryOptions.from_settings(settings).policy
    mcp = MCPClients(servers, RegistryDiscovery(db, policy))
    usage = DatabaseMeter(db, Budgets.from_settings(settings))
    return Worker(db, registry, worker_options(settings), mcp=mcp, catalog=catalog, usage=usage)


def catalog_of(
    settings: Settings, definitions: Sequence[WorkflowDefinition | dict[str, Any]] = ()
) -> DefinitionCatalog:
    """The workflows a process serves, as the settings say (node types loaded first)."""
    return build_catalog(
        registry, node_modules=settings.node_modules, workflows_dir=settings.workflows_dir,
        definitions=definitions,
    )  # fmt: skip


class WorkflowCatalogService:
    """Loads node modules and definitions at start; a bad definition stops the start."""

    def __init__(
        self,
        settings: Settings,
        definitions: Sequence[WorkflowDefinition | dict[str, Any]] = (),
    ) -> None:
        self._settings = settings
        self._definitions = definitions
        self._catalog: DefinitionCatalog | None = None

    @property
    def catalog(self) -> DefinitionCatalog:
        if self._catalog is None:
            raise RuntimeError("the workflow catalog service has not started")
        return self._catalog

    async def start(self) -> None:
        self._catalog = catalog_of(self._settings, self._definitions)

    async def stop(self) -> None:
        return None

    async def check_health(self) -> Health:
        return Health.ok(workflows=len(self.catalog.names()))


class WorkerService:
    """The embedded worker (`WORKER_ENABLED`): claims and runs steps in the server process."""

    def __init__(
        self, settings: Settings, database: DatabaseService, workflows: WorkflowCatalogService
    ) -> None:
        self._settings = settings
        self._database = database
        self._workflows = workflows
        self._worker: Worker | None = None

    async def start(self) -> None:
        self._worker = build_worker(
            self._settings, self._database.database, self._workflows.catalog
        )
        await self._worker.start()

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop(grace=self._settings.shutdown_timeout)
            self._worker = None

    async def check_health(self) -> Health:
        if self._worker is None:
            return Health.down("not running")
        return Health.ok(owner=self._worker.owner, running=self._worker.running)
