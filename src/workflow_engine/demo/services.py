"""The demo servers as parts of an app: mounted under `/demo/mcp/<name>/`, or standalone.

A mounted MCP app does not run its own lifespan, and each session manager runs once (pitfall 9
in docs/architecture.md): `DemoServices` builds fresh servers per app and runs their managers
as a lifecycle service of the host app.

Mounted, the servers are built by the first request to any of them, which waits until they
are up: the MCP SDK they run on is about 20 MB, and a server whose demo nobody calls should
not hold it (docs/architecture.md, "What is loaded when").
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.lazy import BuiltOnFirstUse, import_off_loop

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

NAMES = ("helpscout", "notion", "slack")
PORTS = {"helpscout": 8001, "notion": 8002, "slack": 8003}  # the seed's
MOUNT = "/demo/mcp"
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "localhost", "127.0.0.1"]
# What `servers()` imports: the SDK, through the servers' own modules.
MODULES = ("mcp.server.transport_security", *(f"workflow_engine.demo.{name}" for name in NAMES))


def servers(data_dir: Path) -> dict[str, MCPServer]:
    from workflow_engine.demo import helpscout, notion, slack
    from workflow_engine.demo.store import DemoStore

    builders = {"helpscout": helpscout.build, "notion": notion.build, "slack": slack.build}
    return {name: builders[name](DemoStore(name, data_dir)) for name in NAMES}


def security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server on loopback (a browser page must not reach it
    through a hostile name); none when it listens on every interface and is reached by names
    we cannot know (a container's)."""
    from mcp.server.transport_security import TransportSecuritySettings

    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (what the server listens on)
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, "testserver", host, f"{host}:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
    )


class DemoServices:
    """The three servers' mounts in one host app; the lifecycle service that runs them."""

    def __init__(self, data_dir: Path, host: str) -> None:
        self._data_dir = data_dir
        self._host = host
        self._apps: dict[str, ASGIApp] = {}
        self._servers = BuiltOnFirstUse("demo services", self._enter)

    def mount_on(self, app: Starlette) -> None:
        for name in NAMES:
            app.mount(f"{MOUNT}/{name}", self._mounted(name))

    def _mounted(self, name: str) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._servers.ready()
            await self._apps[name](scope, receive, send)

        return app

    async def _enter(self, stack: contextlib.AsyncExitStack) -> None:
        await import_off_loop(*MODULES)
        managers = []
        for name, server in servers(self._data_dir).items():
            self._apps[name] = server.streamable_http_app(
                streamable_http_path="/", transport_security=security(self._host), host=self._host
            )
            managers.append(server.session_manager)
        for manager in managers:
            await stack.enter_async_context(manager.run())

    async def start(self) -> None:
        await self._servers.start()

    async def stop(self) -> None:
        await self._servers.stop()

    async def check_health(self) -> Health:
        return Health.ok(servers=list(NAMES), demo=True)


async def _healthy(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "demo": True})


async def serve_standalone(
    data_dir: Path, host: str, ports: dict[str, int], *, stop_on_signals: bool = False
) -> None:
    """Each demo server on a port of its own, at `/mcp` (where `*_MCP_URL=http://host:port`
    points), with `/health` for the service registry's checks, until cancelled — or, with
    `stop_on_signals` (the CLI), until SIGTERM or SIGINT."""
    import uvicorn

    class Server(uvicorn.Server):
        # Three servers each swapping the process's signal handlers and putting back what
        # they found would, stopped in another order, leave a dead server's handler behind
        # (and the process deaf to SIGTERM). Signals are handled once, below.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    running: list[uvicorn.Server] = []
    for name, mcp_server in servers(data_dir).items():
        app = mcp_server.streamable_http_app(transport_security=security(host), host=host)
        app.router.routes.append(Route("/health", _healthy, methods=["GET", "HEAD"]))
        config = uvicorn.Config(app, host=host, port=ports[name], log_level="warning")
        running.append(Server(config))
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT) if stop_on_signals else ():
        try:
            loop.add_signal_handler(sig, this.cancel)  # type: ignore[union-attr]
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread; Windows
            continue  # Ctrl-C still cancels us, through asyncio.run
        handled.append(sig)
    serving = [asyncio.create_task(http_server.serve()) for http_server in running]
    try:
        # `wait`, not `gather`: cancelling us must not cancel the servers mid-flight, which
        # would leave their open connections answering with nobody to close them.
        await asyncio.wait(serving, return_when=asyncio.FIRST_EXCEPTION)
        for finished in serving:
            if finished.done():
                finished.result()  # a server that failed to start raises here
    except asyncio.CancelledError:  # stop as on SIGINT: finish requests, run the lifespans out
        for http_server in running:
            http_server.should_exit = True
        await asyncio.gather(*serving, return_exceptions=True)
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
