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
from workflow_engine.lazy import import_off_loop

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
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._wanted = asyncio.Event()
        self._closing = asyncio.Event()

    def mount_on(self, app: Starlette) -> None:
        for name in NAMES:
            app.mount(f"{MOUNT}/{name}", self._mounted(name))

    def _mounted(self, name: str) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._up()
            await self._apps[name](scope, receive, send)

        return app

    async def start(self) -> None:
        # The managers' task groups must be left by the task that entered them, and the
        # lifecycle may start and stop services from different tasks: one task owns them.
        # It is started here, in the lifespan's context, and builds them when first asked.
        self._ready = asyncio.get_running_loop().create_future()
        self._wanted = asyncio.Event()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._own(self._ready), name="demo-services")

    async def _up(self) -> None:
        if self._ready is None:
            # As the SDK's own session manager says when its `run()` was not entered.
            raise RuntimeError("the demo services are not running (the app's lifespan is off)")
        self._wanted.set()
        await asyncio.shield(self._ready)

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            await self._wanted.wait()
            await import_off_loop(*MODULES)
            managers = []
            for name, server in servers(self._data_dir).items():
                self._apps[name] = server.streamable_http_app(
                    streamable_http_path="/", transport_security=security(self._host),
                    host=self._host,
                )  # fmt: skip
                managers.append(server.session_manager)
            async with contextlib.AsyncExitStack() as stack:
                for manager in managers:
                    await stack.enter_async_context(manager.run())
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            if ready.done():
                raise
            if not isinstance(exc, asyncio.CancelledError):
                ready.set_exception(exc)  # the requests waiting for the servers raise it
                return
            ready.set_exception(RuntimeError("the demo services have stopped"))
            ready.exception()  # retrieved: no warning when no request was waiting
            raise

    async def stop(self) -> None:
        if self._owner is not None:
            self._closing.set()
            if not self._wanted.is_set():
                self._owner.cancel()  # never asked for: nothing was built
            with contextlib.suppress(asyncio.CancelledError):
                await self._owner
            self._owner = None

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
