"""The workflow API, on the seed's paths: the templates a server can run, and the node types
its steps can use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from workflow_engine.api.context import CatalogDep
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import require
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.engine import waits
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import NAME_PATTERN, WorkflowDefinition
from workflow_engine.nodes import schemas
from workflow_engine.nodes.registry import registry as nodes
from workflow_engine.schemas.workflows import (
    NodeType,
    NodeTypeList,
    Template,
    TemplateList,
    TemplateStep,
)

router = resource_router(tags=["workflows"])


def template_view(catalog: DefinitionCatalog, definition: WorkflowDefinition) -> Template:
    examples = definition.input_schema.get("examples") or [None]
    return Template(
        name=definition.name,
        version=definition.version,
        versions=catalog.versions(definition.name),
        description=definition.description,
        input_schema=definition.input_schema,
        example_input=examples[0],
        steps=[
            TemplateStep(
                id=step.id, uses=step.uses, needs=step.needs, **{"if": step.if_, "with": step.with_}
            )
            for step in definition.steps
        ],
    )


@router.get(
    "/api/v1/workflows/nodes",
    summary="The node types steps can use here, with the arguments each takes",
)
async def list_node_types(
    _principal: Annotated[Principal, require(Permission.workflows_read)],
) -> NodeTypeList:
    """Core node types, those of installed plugins (the `workflow_engine.nodes` entry-point
    group) and of `NODE_MODULES`, and the engine's own (`sleep`, `wait.event`), by name."""
    items = [
        NodeType(name=name, description=schemas.description(function),
                 arguments=schemas.argument_schema(name, function), module=function.__module__)
        for name, function in nodes.items()
    ]  # fmt: skip
    items += [NodeType(name=name, description=primitive.description,
                       arguments=primitive.arguments, module="engine")
              for name, primitive in waits.PRIMITIVES.items()]  # fmt: skip
    return NodeTypeList(items=sorted(items, key=lambda item: item.name))


@router.get(
    "/api/v1/workflows/templates",
    summary="The workflows this server can run (latest version of each)",
    response_model_by_alias=True,
)
async def list_templates(
    _principal: Annotated[Principal, require(Permission.workflows_read)],
    catalog: CatalogDep,
) -> TemplateList:
    return TemplateList(items=[template_view(catalog, d) for d in catalog.latest()])


@router.get(
    "/api/v1/workflows/templates/{name}",
    summary="One workflow's definition: input schema with example, steps and their needs",
    response_model_by_alias=True,
)
async def get_template(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    _principal: Annotated[Principal, require(Permission.workflows_read)],
    catalog: CatalogDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Template:
    return template_view(catalog, catalog.get(name, version))
