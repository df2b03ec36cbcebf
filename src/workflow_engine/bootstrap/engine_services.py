"""The workflow engine's services: the definition catalog (and, next, the worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.config import Settings
from workflow_engine.engine.catalog import DefinitionCatalog, build_catalog
from workflow_engine.engine.definitions import WorkflowDefinition
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
