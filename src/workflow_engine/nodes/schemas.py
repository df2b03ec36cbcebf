"""The arguments a node type takes, as JSON Schema, read from its function's signature.

A node's keyword parameters after its context are the arguments a step gives it in `with`:
their annotations are the types, their defaults make them optional, and `**values` lets it take
any others (`transform`). Pydantic turns that into a schema; a signature it cannot describe
(an annotation that is not a type it knows) is described as any object rather than refused, so
listing node types never fails because of one plugin.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

import structlog
from pydantic import ConfigDict, Field, create_model

from workflow_engine.nodes.registry import NodeFunction

logger = structlog.get_logger(__name__)

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@functools.cache
def argument_schema(name: str, function: NodeFunction) -> dict[str, Any]:
    """The JSON Schema of the `with` a step using `function` (node type `name`) may give."""
    try:
        return _schema(name, function)
    except Exception as exc:  # an annotation pydantic cannot describe: say less, not nothing
        logger.info("node arguments described as any object", node=name, reason=str(exc))
        return dict(ANY_OBJECT)


def description(function: NodeFunction) -> str:
    """The first paragraph of the function's docstring."""
    doc = inspect.getdoc(function) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _schema(name: str, function: NodeFunction) -> dict[str, Any]:
    hints = typing.get_type_hints(function)
    parameters = list(inspect.signature(function).parameters.values())[1:]  # after the context
    fields: dict[str, Any] = {}
    takes_more = False
    for index, parameter in enumerate(parameters):
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_more = True
        elif parameter.kind in (inspect.Parameter.KEYWORD_ONLY,
                                inspect.Parameter.POSITIONAL_OR_KEYWORD):  # fmt: skip
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            # Named by alias: an argument may be called `json` or `schema`, which a model's
            # own attributes would shadow.
            title = parameter.name.replace("_", " ").capitalize()
            field = Field(default, alias=parameter.name, title=title)
            fields[f"argument_{index}"] = (hints.get(parameter.name, Any), field)
    config = ConfigDict(extra="allow" if takes_more else "forbid", arbitrary_types_allowed=True)
    model = create_model(f"{name} arguments", __config__=config, **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema
