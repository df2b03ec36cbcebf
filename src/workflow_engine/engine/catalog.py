"""The workflow definitions a process knows, by name and version.

Sources, loaded at start: the package's `templates/`, then `WORKFLOWS_DIR`; and Python code
may `register` more. Two sources may not give the same name and version different content.
Runs store the definition they started with, so nothing here can change a run in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from workflow_engine.engine.definitions import (
    DefinitionProblem,
    InvalidDefinition,
    WorkflowDefinition,
    load_file,
    parse,
)
from workflow_engine.errors import NotFound
from workflow_engine.nodes.registry import NodeRegistry, load_node_types

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


class UnknownWorkflow(NotFound):
    def __init__(self, name: str, available: list[str], version: int | None = None) -> None:
        wanted = f"{name!r} version {version}" if version is not None else repr(name)
        listed = ", ".join(available) or "none"
        super().__init__(f"no workflow {wanted}; available: {listed}")
        self.available = available


class DefinitionCatalog:
    def __init__(self, nodes: NodeRegistry) -> None:
        self._nodes = nodes
        self._definitions: dict[str, dict[int, WorkflowDefinition]] = {}
        self._sources: dict[tuple[str, int], str] = {}

    @property
    def nodes(self) -> NodeRegistry:
        """The node types its definitions are checked against."""
        return self._nodes

    def load_templates(self) -> None:
        """The built-in templates shipped in the package."""
        folder = files("workflow_engine") / "templates"
        self.load_directory(Path(str(folder)))

    def load_directory(self, directory: Path) -> None:
        """Every definition file in `directory`; raises `InvalidDefinition` with the problems of
        every file at once, so one start reports them all."""
        if not directory.is_dir():
            problem = DefinitionProblem(str(directory), None, None, "is not a directory")
            raise InvalidDefinition([problem])
        problems: list[DefinitionProblem] = []
        for path in sorted(directory.iterdir()):
            if path.suffix not in DEFINITION_SUFFIXES or not path.is_file():
                continue
            try:
                self._add(load_file(path, self._nodes.__contains__), str(path))
            except InvalidDefinition as exc:
                problems.extend(exc.problems)
        if problems:
            raise InvalidDefinition(problems)

    def register(
        self, document: WorkflowDefinition | dict[str, Any], source: str = "python"
    ) -> WorkflowDefinition:
        """Add a definition from Python (a model or the same document a file would hold)."""
        raw = document.document() if isinstance(document, WorkflowDefinition) else document
        definition = parse(raw, source, self._nodes.__contains__)
        self._add(definition, source)
        return definition

    def _add(self, definition: WorkflowDefinition, source: str) -> None:
        key = (definition.name, definition.version)
        existing = self._definitions.get(definition.name, {}).get(definition.version)
        if existing is not None and existing.document() != definition.document():
            message = (
                f"{definition.name} version {definition.version} is already defined "
                f"differently by {self._sources[key]}; give this one a new version"
            )
            raise InvalidDefinition([DefinitionProblem(source, None, "version", message)])
        self._definitions.setdefault(definition.name, {})[definition.version] = definition
        self._sources.setdefault(key, source)

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def get(self, name: str, version: int | None = None) -> WorkflowDefinition:
        """The named definition at `version`, or its latest version."""
        versions = self._definitions.get(name)
        if not versions:
            raise UnknownWorkflow(name, self.names())
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise UnknownWorkflow(name, self.names(), version)
        return versions[version]

    def versions(self, name: str) -> list[int]:
        return sorted(self._definitions.get(name, {}))

    def latest(self) -> list[WorkflowDefinition]:
        return [self.get(name) for name in self.names()]


def build_catalog(
    nodes: NodeRegistry,
    *,
    node_modules: Sequence[str] = (),
    workflows_dir: Path | None = None,
    definitions: Sequence[WorkflowDefinition | dict[str, Any]] = (),
) -> DefinitionCatalog:
    """The catalog a process serves: node types loaded first — installed plugins, then
    `node_modules` (they must exist before definitions that use them are checked) — then the
    package's templates, then
    `workflows_dir`, then definitions registered from Python."""
    load_node_types(list(node_modules))
    catalog = DefinitionCatalog(nodes)
    catalog.load_templates()
    if workflows_dir is not None:
        catalog.load_directory(workflows_dir)
    for definition in definitions:
        catalog.register(definition)
    return catalog
