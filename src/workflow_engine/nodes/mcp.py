"""`mcp.call` and `mcp.list_tools`: tools of MCP servers as steps.

`mcp.call` takes `server` (a configured name, or else the name of a registered service whose
`metadata.protocol` is `mcp`: see the registry), `tool`, `arguments` and an optional `timeout`
(seconds, the server's own by default); its output is `data` (the tool's structured result,
or its text parsed as JSON, or the text), `text`, `server`, `tool`, `latency_ms`, and
`instance` (the registry id of the instance that answered; null for a configured server). A server
that is down, hangs or lost the session fails the attempt as retryable; a tool that reports
an error fails the step with the server's message.
"""

from __future__ import annotations

from typing import Any

from workflow_engine.integrations.mcp import MCPCallError
from workflow_engine.nodes.registry import FatalStepError, NodeContext, StepError, node

MAX_TIMEOUT = 600.0


@node("mcp.call")
async def call(
    ctx: NodeContext,
    *,
    server: str,
    tool: str,
    arguments: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    if not isinstance(server, str) or not isinstance(tool, str):
        raise FatalStepError("`server` and `tool` must be names")
    if arguments is not None and not isinstance(arguments, dict):
        raise FatalStepError("`arguments` must be an object")
    seconds = None if timeout is None else min(max(float(timeout), 0.1), MAX_TIMEOUT)
    try:
        result = await ctx.mcp.call_tool(server, tool, arguments or {}, seconds, ctx.tenant_id)
    except MCPCallError as exc:
        ctx.log.warning("mcp call failed", server=server, tool=tool, error_class=exc.error_class)
        raise _step_error(exc) from None
    ctx.log.info("mcp call", server=server, tool=tool, latency_ms=result.latency_ms,
                 instance=result.instance)  # fmt: skip
    return {
        "server": server,
        "tool": tool,
        "data": result.data,
        "text": result.text,
        "latency_ms": result.latency_ms,
        "instance": result.instance,
    }


@node("mcp.list_tools")
async def list_tools(ctx: NodeContext, *, server: str, refresh: bool = False) -> dict[str, Any]:
    try:
        tools = await ctx.mcp.list_tools(server, refresh=bool(refresh), tenant_id=ctx.tenant_id)
    except MCPCallError as exc:
        raise _step_error(exc) from None
    return {"server": server, "tools": tools}


def _step_error(exc: MCPCallError) -> StepError:
    kind = StepError if exc.retryable else FatalStepError
    return kind(str(exc), error_class=exc.error_class)
