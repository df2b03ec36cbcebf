"""The workflow engine's services: the definition catalog and the embedded worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.config import Settings
from workflow_engine.engine.catalog import DefinitionCatalog, build_catalog
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.worker import Worker, worker_options
from workflow_engine.nodes import registry


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
        self._catalog = build_catalog(
            registry,
            node_modules=self._settings.node_modules,
            workflows_dir=self._settings.workflows_dir,
            definitions=self._definitions,
        )

    async def stop(self) -> None:
        return None

    async def check_health(self) -> Health:
        return Health.ok(workflows=len(self.catalog.names()))


class WorkerService:
    """The embedded worker (`WORKER_ENABLED`): claims and runs steps in the server process."""

    def __init__(self, settings: Settings, database: DatabaseService) -> None:
        self._settings = settings
        self._database = database
        self._worker: Worker | None = None

    async def start(self) -> None:
        options = worker_options(self._settings)
        self._worker = Worker(self._database.database, registry, options)
        await self._worker.start()

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop(grace=self._settings.shutdown_timeout)
            self._worker = None

    async def check_health(self) -> Health:
        if self._worker is None:
            return Health.down("not running")
        return Health.ok(owner=self._worker.owner, running=self._worker.running)
