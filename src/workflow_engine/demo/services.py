"""The demo servers as parts of an app: mounted under `/demo/mcp/<name>/`, or standalone.

A mounted MCP app does not run its own lifespan, and each session manager runs once (pitfall 9
in docs/architecture.md): `DemoServices` builds fresh servers per app and runs their managers
as a lifecycle service of the host app.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.demo import helpscout, notion, slack
from workflow_engine.demo.store import DemoStore

BUILDERS = {"helpscout": helpscout.build, "notion": notion.build, "slack": slack.build}
PORTS = {"helpscout": 8001, "notion": 8002, "slack": 8003}  # the seed's
MOUNT = "/demo/mcp"
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "localhost", "127.0.0.1"]


def servers(data_dir: Path) -> dict[str, MCPServer]:
    return {name: build(DemoStore(name, data_dir)) for name, build in BUILDERS.items()}


def security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server on loopback (a browser page must not reach it
    through a hostile name); none when it listens on every interface and is reached by names
    we cannot know (a container's)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (what the server listens on)
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, "testserver", host, f"{host}:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
    )


class DemoServices:
    """The three servers' apps for one host app; the lifecycle service that runs them."""

    def __init__(self, data_dir: Path, host: str) -> None:
        self.apps: dict[str, Starlette] = {}
        self._managers = []
        for name, server in servers(data_dir).items():
            self.apps[name] = server.streamable_http_app(
                streamable_http_path="/", transport_security=security(host), host=host
            )
            self._managers.append(server.session_manager)
        self._owner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def mount_on(self, app: Starlette) -> None:
        for name, sub in self.apps.items():
            app.mount(f"{MOUNT}/{name}", sub)

    async def start(self) -> None:
        # The managers' task groups must be left by the task that entered them, and the
        # lifecycle may start and stop services from different tasks: one task owns them.
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._own(ready), name="demo-services")
        await ready

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                for manager in self._managers:
                    await stack.enter_async_context(manager.run())
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def stop(self) -> None:
        if self._owner is not None:
            self._closing.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._owner
            self._owner = None

    async def check_health(self) -> Health:
        return Health.ok(servers=sorted(self.apps), demo=True)


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
