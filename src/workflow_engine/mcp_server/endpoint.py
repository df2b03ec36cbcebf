"""`/mcp`: the engine's MCP server in the app, over streamable HTTP.

- Every request is authenticated as the API's routes are, by `api/security.py`'s `Authorise`:
  the same bearer tokens and API keys, the same 401 problem with its `WWW-Authenticate`
  challenge. The app's guard (`api/guard.py`) has rate-limited it already, by the same
  buckets (429 with `Retry-After`) and body limit. The caller is left in the request's state
  for the tools (`tools.py`), which check each call's permission and scope it to the tenant.
- Stateless: each POST is answered on its own, with no session kept in this process's memory,
  so that `serve --workers N` behind a load balancer serves MCP too (pitfall 2 in
  docs/architecture.md). Progress notifications still reach the client: they travel on the
  response stream of the request they belong to.
- No DNS-rebinding protection (the SDK's default on loopback): it keeps a hostile web page from
  reaching a local server through its browser, and such a page cannot send our credentials;
  behind a proxy the Host header is the proxy's business.
- Built when first asked for, as the demo services are (pitfall 9): the SDK is about 20 MB, not
  loaded by a server nobody calls over MCP; the session manager runs in a task of its own
  (`lazy.BuiltOnFirstUse`), which enters and leaves it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from workflow_engine.api.context import AppContext, run_service
from workflow_engine.api.security import Authorise
from workflow_engine.auth.permissions import Permission
from workflow_engine.bootstrap.core_services import DatabaseService, EventStoreService
from workflow_engine.bootstrap.engine_services import WorkflowCatalogService
from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.config import Settings
from workflow_engine.lazy import BuiltOnFirstUse, import_off_loop

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

PATH = "/mcp"
# What `_build` imports: the SDK, through the tools' module.
MODULES = ("mcp.server.transport_security", "workflow_engine.mcp_server.tools")
# Any role may connect (each holds it); each tool asks for its own permission.
_CONNECT = Authorise(Permission.workflows_read)


class MCPEndpoint:
    """The lifecycle service that runs the server, and the ASGI app of its route."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context: AppContext | None = None
        self._manager: StreamableHTTPSessionManager | None = None
        self._server = BuiltOnFirstUse("MCP server", self._enter)

    def mount_on(self, app: FastAPI, context: AppContext) -> None:
        self._context = context
        # A route of the exact path (a mount would answer `/mcp` with a redirect to `/mcp/`),
        # whose endpoint is this ASGI app. POST carries every message; GET (a stream for
        # server-initiated messages) and DELETE (ending a session) mean nothing without
        # sessions, and the SDK answers them so.
        app.router.routes.append(Route(PATH, self, methods=["GET", "POST", "DELETE"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Raises Unauthorized before anything is sent; the app's problem handlers answer it.
        principal = await _CONNECT(Request(scope, receive))
        from workflow_engine.mcp_server.tools import CALLER_STATE  # imported by `_enter`

        await self._server.ready()
        scope.setdefault("state", {})[CALLER_STATE] = principal
        assert self._manager is not None
        await self._manager.handle_request(scope, receive, send)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def check_health(self) -> Health:
        return Health.ok(path=PATH, built=self._server.built)

    async def _enter(self, stack: contextlib.AsyncExitStack) -> None:
        await import_off_loop(*MODULES)
        self._manager = self._build()
        await stack.enter_async_context(self._manager.run())

    def _build(self) -> StreamableHTTPSessionManager:
        from mcp.server.transport_security import TransportSecuritySettings

        from workflow_engine.engine.approval_service import ApprovalService
        from workflow_engine.engine.run_waiter import RunWaiter
        from workflow_engine.mcp_server.tools import Engine, build_server

        context = self._context
        assert context is not None, "mount_on() first"
        runs = run_service(context)
        engine = Engine(
            catalog=context.service("workflows", WorkflowCatalogService).catalog,
            runs=runs,
            waiter=RunWaiter(runs, context.service("events", EventStoreService).tail),
            approvals=ApprovalService(context.service("database", DatabaseService).database),
            tool_wait_seconds=self._settings.mcp_tool_wait_seconds,
            wait_cap_seconds=self._settings.trigger_wait_max_seconds,
        )
        server = build_server(engine)
        server.streamable_http_app(
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return server.session_manager
