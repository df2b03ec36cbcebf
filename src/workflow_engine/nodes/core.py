"""The node types every server has (`http.request` joins them with the engine's HTTP client)."""

from __future__ import annotations

from typing import Any

from workflow_engine.nodes.registry import NodeContext, node


@node("transform")
async def transform(ctx: NodeContext, **values: Any) -> dict[str, Any]:
    """Returns its arguments, expressions already evaluated: reshaping data between steps."""
    return values
