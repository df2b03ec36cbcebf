"""The engine's MCP server: a tool per workflow, the run tools, resources for templates and runs.

Every handler is thin: it takes the caller the endpoint authenticated (`endpoint.py`) from the
HTTP request that carried the message and calls the services the REST API calls, whose views
(`api/runs.py`, `api/approvals.py`, `api/workflows.py`) shape the answers. A domain error is
the tool's error result, titled as the API's problem would be ("Not Found: no run ...").

Which role may use which tool is one table, `ToolPolicy`: a tool call the caller's role may not
make is refused before it runs, naming the permission, and `tools/list` shows each caller only
the tools its role may call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, Field

from workflow_engine.api.approvals import Comment, StepId, approval_view, decision_view
from workflow_engine.api.pagination import MAX_LIMIT
from workflow_engine.api.runs import entry_id, run_answer, run_summary, status_body
from workflow_engine.api.workflows import template_view
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.db.availability import RETRY_AFTER_SECONDS, availability, unreachable
from workflow_engine.engine import runs
from workflow_engine.engine.approval_service import ApprovalService
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import NAME_PATTERN, WorkflowDefinition
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_waiter import RunWaiter
from workflow_engine.engine.runs import RunService
from workflow_engine.engine.states import RUN_FINISHED
from workflow_engine.errors import Conflict, InvalidInput, WorkflowEngineError
from workflow_engine.schemas.runs import RunResults
from workflow_engine.schemas.workflows import TemplateList
from workflow_engine.version import __version__

F = TypeVar("F", bound=Callable[..., Awaitable[dict[str, Any]]])

#: Where the endpoint leaves the caller in the request's state.
CALLER_STATE = "mcp_caller"
RUN_TOOL_PREFIX = "run_"
#: The error code of a resource that is not there (the MCP specification's).
RESOURCE_NOT_FOUND = -32002
#: Reading resources needs this; every role holds it.
READ = Permission.workflows_read

RunId = Annotated[uuid.UUID, Field(description="The run's `workflow_id`.")]
WaitSeconds = Annotated[
    float,
    Field(ge=0, allow_inf_nan=False,
          description="Seconds to wait for the run to end first (progress is reported while "
          "waiting), at most TRIGGER_WAIT_MAX_SECONDS."),
]  # fmt: skip


@dataclass(frozen=True)
class Caller:
    """Who sent the MCP message, as the endpoint authenticated the request carrying it."""

    principal: Principal
    correlation_id: str | None

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.principal.tenant_id

    @property
    def origin(self) -> runs.Origin:
        return runs.Origin(self.principal.actor, self.correlation_id)


def caller_of(request: Any) -> Caller:
    """The caller of the message `request` (the HTTP request that carried it) brought."""
    state = request.scope["state"]
    return Caller(state[CALLER_STATE], state.get("correlation_id"))


@dataclass(frozen=True)
class Engine:
    """What the tools call: the REST API's services, and how long tools wait for a run."""

    catalog: DefinitionCatalog
    runs: RunService
    waiter: RunWaiter
    approvals: ApprovalService
    tool_wait_seconds: float  # MCP_TOOL_WAIT_SECONDS: what `run_<name>` waits
    wait_cap_seconds: float  # TRIGGER_WAIT_MAX_SECONDS: the most any wait may ask for

    async def wait(self, ctx: Context, run: RunRecord, seconds: float) -> RunRecord:
        """The run once it ended or `seconds` passed; the steps done so far are reported as
        progress whenever they change (when the client asked for progress with a token)."""
        reported = -1

        async def report(current: RunRecord) -> None:
            nonlocal reported
            if current.steps_done > reported:
                reported = current.steps_done
                await ctx.report_progress(
                    current.steps_done, current.steps_total,
                    f"{current.steps_done} of {current.steps_total} steps done ({current.status})",
                )  # fmt: skip

        caller = caller_of(ctx.request_context.request)
        return await self.waiter.until_finished(caller.tenant_id, run, seconds, progress=report)


def describe(exc: WorkflowEngineError) -> str:
    """A domain error as one line for an agent: the problem's title and detail, and each
    field's error when there are some."""
    text = f"{exc.title}: {exc.detail}"
    for error in exc.errors or ():
        where = ".".join(str(part) for part in error.get("loc", ()))
        text += f"; {where}: {error.get('msg')}" if where else f"; {error.get('msg')}"
    return text


@contextmanager
def tool_errors(tool: str) -> Iterator[None]:
    """Domain errors as the tool's error result. Anything else stays a crash, which the SDK
    logs and answers with a generic error."""
    try:
        yield
    except WorkflowEngineError as exc:
        raise ToolError(describe(exc)) from exc
    except Exception as exc:
        if not unreachable(exc):
            raise
        availability.failed(exc, f"MCP tool {tool}")
        raise ToolError(
            "Database unavailable: the call was not carried out (no run was started, nothing "
            f"was changed); retry in {RETRY_AFTER_SECONDS} s"
        ) from exc


def _answer(document: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(document, indent=2))],
        structured_content=document,
    )


class _WorkflowInput(ArgModelBase):
    """A `run_<name>` tool's arguments, passed through as the run's input: the workflow's own
    input schema (the tool's) is checked by the trigger, with one error per field."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"data": dict(self.model_extra or {})}


def run_tool(engine: Engine, definition: WorkflowDefinition) -> Tool:
    """`run_<name>`: starts the workflow's latest version with the arguments as its input and
    answers its outcome, or its id and status once `tool_wait_seconds` have passed."""
    name, version = definition.name, definition.version  # the version whose schema it shows
    waits = engine.tool_wait_seconds

    async def run_workflow(data: dict[str, Any], ctx: Context) -> CallToolResult:
        caller = caller_of(ctx.request_context.request)
        with tool_errors(RUN_TOOL_PREFIX + name):
            run, _ = await engine.runs.trigger(
                caller.tenant_id, name, data, version=version, idempotency_key=None,
                origin=caller.origin,
            )  # fmt: skip
            run = await engine.wait(ctx, run, waits)
        return _answer(run_answer(run).model_dump(mode="json"))

    return Tool(
        fn=run_workflow,
        name=RUN_TOOL_PREFIX + name,
        title=f"Run {name}",
        description=f"{definition.description}\n\nRuns the `{name}` workflow with the arguments "
        f"as its input. Answers its output when it ends within {waits:g} s; otherwise its "
        "`workflow_id` and status: follow it with get_run_status, or wait on with "
        "get_run_results.",
        parameters=definition.input_schema,
        fn_metadata=FuncMetadata(arg_model=_WorkflowInput),
        is_async=True,
        context_kwarg="ctx",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    open_world_hint=True),
    )  # fmt: skip


class ToolPolicy:
    """The permission each tool needs: calls the caller's role may not make are refused before
    they run, and `tools/list` leaves out the tools it may not call. Every tool is registered
    with its permission (`build_server`): a name missing from the table is not a tool, which
    the SDK answers. Reading resources needs `workflows:read`."""

    def __init__(self) -> None:
        self.permissions: dict[str, Permission] = {}

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.request is None:  # not over HTTP: the endpoint never serves such messages
            return await call_next(ctx)
        principal = caller_of(ctx.request).principal
        if ctx.method == "tools/call":
            tool = str((ctx.params or {}).get("name", ""))
            needed = self.permissions.get(tool)
            if needed is None:
                return await call_next(ctx)  # the SDK's answer to an unknown tool
            if not principal.can(needed):
                text = f"Forbidden: the {principal.role} role does not have the {needed} permission"
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        elif ctx.method.startswith("resources/") and not principal.can(READ):
            raise MCPError(INVALID_PARAMS, f"the {principal.role} role does not have the {READ} "
                                           "permission")  # fmt: skip
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict):
            result["tools"] = [tool for tool in result.get("tools", ())
                               if self._allows(principal, tool.get("name"))]  # fmt: skip
        return result

    def _allows(self, principal: Principal, tool: Any) -> bool:
        needed = self.permissions.get(tool)
        return needed is not None and principal.can(needed)


def build_server(engine: Engine) -> MCPServer:
    """The server, its tools built from the catalog as it is at start (a workflow added later
    needs a restart, as the REST API's catalog does)."""
    policy = ToolPolicy()
    catalog = engine.catalog
    workflows = catalog.latest()
    server: MCPServer = MCPServer(
        "workflow-engine",
        version=__version__,
        instructions="Workflows of this workflow-engine server as tools: `run_<name>` starts "
        "one and answers its output (or its id while it still runs); the other tools read, "
        "follow, cancel and approve runs. Resources: workflow://templates/<name>, "
        "workflow://runs/<id>.",
        tools=[run_tool(engine, definition) for definition in workflows],
        middleware=[policy],
        log_level="WARNING",
    )  # fmt: skip
    for definition in workflows:
        policy.permissions[RUN_TOOL_PREFIX + definition.name] = Permission.workflows_run

    def tool(
        permission: Permission, *, read_only: bool = True, destructive: bool = False
    ) -> Callable[[F], F]:
        def register(fn: F) -> F:
            policy.permissions[fn.__name__] = permission
            hints = ToolAnnotations(read_only_hint=read_only, destructive_hint=destructive)
            server.tool(annotations=hints)(fn)
            return fn

        return register

    @tool(READ)
    async def list_workflows() -> dict[str, Any]:
        """The workflows this server runs (latest version of each): description, input schema
        with an example, steps. Each is also a tool, `run_<name>`."""
        found = TemplateList(items=[template_view(catalog, d) for d in catalog.latest()])
        return found.model_dump(mode="json", by_alias=True)

    @tool(READ)
    async def get_run_status(run_id: RunId, ctx: Context) -> dict[str, Any]:
        """A run's status: each step's status, attempts and error, progress, LLM usage."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("get_run_status"):
            found = await engine.runs.status(caller.tenant_id, run_id)
        document: dict[str, Any] = json.loads(status_body(found, run_id))
        return document

    @tool(READ)
    async def get_run_results(
        run_id: RunId, ctx: Context, wait_seconds: WaitSeconds = 0
    ) -> dict[str, Any]:
        """A finished run's output, or why it failed or was cancelled. With `wait_seconds`,
        waits that long for a run still going to end; an error says when it has not."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("get_run_results"):
            if wait_seconds > engine.wait_cap_seconds:
                raise InvalidInput(f"wait_seconds must be at most {engine.wait_cap_seconds:g} "
                                   "(TRIGGER_WAIT_MAX_SECONDS)")  # fmt: skip
            run = await engine.runs.get(caller.tenant_id, run_id)
            if wait_seconds:
                run = await engine.wait(ctx, run, wait_seconds)
            if run.status not in RUN_FINISHED:
                raise Conflict(f"run {run.id} has not finished: it is {run.status}")
        results = RunResults(
            workflow_id=run.id, status=run.status, output=run.output, error=run.error
        )
        return results.model_dump(mode="json")

    @tool(READ)
    async def get_run_logs(
        run_id: RunId,
        ctx: Context,
        after: Annotated[
            str | None, Field(max_length=40, description="Entries after this entry id.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, Any]:
        """A run's log, oldest first: its nodes' entries and its lifecycle. `next_after`, when
        set, reads the next page."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("get_run_logs"):
            start = entry_id(after, "after")
            page = await engine.runs.log_page(caller.tenant_id, run_id, after=start, limit=limit)
        return {"items": json.loads(page.items), "next_after": page.next_key}

    @tool(Permission.workflows_run, read_only=False, destructive=True)
    async def cancel_run(run_id: RunId, ctx: Context) -> dict[str, Any]:
        """Cancel a run: steps not started never start, running ones are interrupted, it ends
        `cancelled`. Cancelling again is harmless; a finished run is an error."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("cancel_run"):
            run = await engine.runs.cancel(caller.tenant_id, run_id, caller.origin)
        return run_summary(run).model_dump(mode="json")

    @tool(Permission.workflows_approve, read_only=False)
    async def approve_step(
        run_id: RunId,
        step: StepId,
        ctx: Context,
        approve: Annotated[bool, Field(description="false rejects.")] = True,
        comment: Comment = None,
        data: Annotated[
            Any, Field(description="Approving only: replaces the proposal as the step's data.")
        ] = None,
    ) -> dict[str, Any]:
        """Approve or reject what a run's `approval` step waits for (list_approvals lists
        them). Approved, the step goes on with the proposal or `data`; rejected, it fails with
        the comment as its reason."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("approve_step"):
            if not approve and data is not None:
                raise InvalidInput("`data` replaces the proposal of an approval: not for a "
                                   "rejection")  # fmt: skip
            decided = await engine.approvals.decide(
                caller.tenant_id, run_id, step, approve=approve, origin=caller.origin,
                comment=comment, data=data, edited=data is not None,
            )  # fmt: skip
        return decision_view(decided).model_dump(mode="json")

    @tool(READ)
    async def list_approvals(
        ctx: Context,
        workflow_name: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50,
    ) -> dict[str, Any]:
        """What waits for an approval decision now in the tenant, oldest first."""
        caller = caller_of(ctx.request_context.request)
        with tool_errors("list_approvals"):
            found = await engine.approvals.waiting(
                caller.tenant_id, workflow_name=workflow_name, limit=limit
            )
        return {"items": [approval_view(waiting).model_dump(mode="json") for waiting in found]}

    for definition in workflows:
        _template_resource(server, catalog, definition)

    @server.resource(
        "workflow://runs/{run_id}", name="run", mime_type="application/json",
        description="A run's status, as get_run_status answers it.",
    )  # fmt: skip
    async def run_resource(run_id: str, ctx: Context) -> str:
        caller = caller_of(ctx.request_context.request)
        try:
            found = await engine.runs.status(caller.tenant_id, uuid.UUID(run_id))
        except ValueError:
            raise MCPError(INVALID_PARAMS, f"{run_id!r} is not a run id") from None
        except WorkflowEngineError as exc:
            raise MCPError(RESOURCE_NOT_FOUND, describe(exc)) from exc
        return status_body(found, uuid.UUID(run_id))

    return server


def _template_resource(
    server: MCPServer, catalog: DefinitionCatalog, definition: WorkflowDefinition
) -> None:
    @server.resource(
        f"workflow://templates/{definition.name}", name=definition.name,
        title=f"The {definition.name} workflow", mime_type="application/json",
        description=definition.description,
    )  # fmt: skip
    async def template() -> str:
        return template_view(catalog, definition).model_dump_json(by_alias=True)
