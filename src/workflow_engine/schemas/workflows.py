"""The workflows a server can run, and the node types their steps can use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TemplateStep(BaseModel):
    id: str
    uses: str
    needs: list[str]
    condition: str | None = Field(None, alias="if", serialization_alias="if")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        serialization_alias="with",
        description="The step's `with` as written: expressions unresolved.",
    )


class Template(BaseModel):
    name: str
    version: int
    versions: list[int] = Field(description="Every version this server can run.")
    description: str
    input_schema: dict[str, Any]
    example_input: Any = Field(None, description="The schema's first example, if it has one.")
    steps: list[TemplateStep] = Field(description="Its steps as defined, `needs` for the graph.")


class TemplateList(BaseModel):
    items: list[Template]


class NodeType(BaseModel):
    name: str = Field(description="What a step's `uses` names.")
    description: str
    arguments: dict[str, Any] = Field(description="JSON Schema of the step's `with`.")
    module: str = Field(description="Where it is defined: `engine` for the engine's own.")


class NodeTypeList(BaseModel):
    items: list[NodeType]
