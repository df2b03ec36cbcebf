"""Reused MCP client sessions, one per server, with timeouts, retries and a circuit breaker.

The SDK wants a client session entered and left by one task, so each server gets an owner
task that opens the session and keeps it open until the pool closes or a call finds it
broken; steps call through it from their own tasks (the SDK allows concurrent calls). A
broken session (connection closed, server restarted and lost it, transport error) is
dropped and the call retried once on a fresh one. A server that keeps failing opens its
circuit: for `COOLDOWN` seconds calls fail at once instead of waiting for timeouts, then one
call is let through to try it again.

A server name that is not configured is looked up in the service registry when the pool has
a `Discovery`: its healthy instances are tried in round-robin order, and one the request
never reached (no connection, no session, or its circuit open) hands the call to the next —
the registry's checker may not have noticed yet. Once a request may have arrived (a
timeout, an error answer, a tool error) it is not failed over: that instance may have acted,
and the step's retry policy decides what happens next.

What steps get back (`ToolOutput`): the tool's structured result when it gives one, else its
text parsed as JSON when it is JSON, else the text. A tool that reports an error (`isError`)
fails with the server's own message and is not retried: the server answered, and said no.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from workflow_engine.integrations.mcp.config import MCPServerConfig
from workflow_engine.lazy import import_off_loop
from workflow_engine.net.addresses import NetworkPolicy
from workflow_engine.net.pinning import pinning_transport
from workflow_engine.observability import metrics, tracing

if TYPE_CHECKING:
    from mcp import Client

# The SDK is imported by the first session a process opens: a worker whose workflows call no
# MCP server never holds it (about 20 MB; see docs/architecture.md).
SDK_MODULES = ("httpx2", "mcp", "mcp.client.sse", "mcp.client.streamable_http")

FAILURES_TO_OPEN = 5
COOLDOWN = 30.0  # seconds a server's circuit stays open
TOOLS_TTL = 60.0  # seconds a server's tool list is reused
# MCP error codes that mean the session, not the request, is gone.
SESSION_LOST = {-32000, -32600}
REQUEST_TIMEOUT = -32001


class MCPCallError(Exception):
    """A call failed. `retryable`: the server may answer another time (down, timed out, a
    lost session); otherwise it answered and refused (a tool error, an unknown server)."""

    def __init__(
        self, message: str, *, retryable: bool, error_class: str, reached: bool = True
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.error_class = error_class
        # False when the request never left: no session could be opened, or the circuit was
        # open. Only then may another instance be asked (it cannot have acted twice).
        self.reached = reached


@dataclass(frozen=True)
class ToolOutput:
    data: Any
    text: str
    latency_ms: float
    instance: str | None = None  # the registry's id of the instance that answered


@dataclass(frozen=True)
class Instance:
    """A registered instance of an MCP server: its registry id and MCP endpoint, and the
    network policy its connections are pinned by."""

    id: str
    url: str
    policy: NetworkPolicy | None = None


class Discovery(Protocol):
    async def instances(self, tenant_id: uuid.UUID, name: str) -> list[Instance]: ...


class _Session:
    """One server's session, owned by one task."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self.client: Client | None = None
        self._ready: asyncio.Future[Client] | None = None
        self._closing = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        # Before the connection's timeout starts: the first import takes a while.
        await import_off_loop(*SDK_MODULES)
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._own(), name=f"mcp-{self.config.name}")
        try:
            async with asyncio.timeout(self.config.timeout):
                return await asyncio.shield(self._ready)
        except TimeoutError:
            await self.close()
            raise

    async def _own(self) -> None:
        assert self._ready is not None
        try:
            from mcp import Client  # imported by open()

            async with _transport(self.config) as transport, Client(
                transport, read_timeout_seconds=self.config.timeout
            ) as client:  # fmt: skip
                self.client = client
                self._ready.set_result(client)
                await self._closing.wait()
        except BaseException as exc:  # handed to whoever waits for the session
            if not self._ready.done():
                # A session closed while opening is a failed connection to those waiting,
                # not a cancellation of their own tasks.
                closed = isinstance(exc, asyncio.CancelledError)
                failure = ConnectionError("the session was closed") if closed else _flatten(exc)
                self._ready.set_exception(failure)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.client = None

    async def close(self) -> None:
        self._closing.set()
        if self._owner is not None and not self._owner.done():
            self._owner.cancel()
            with contextlib.suppress(BaseException):
                await self._owner
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError("the session was closed"))
        if self._ready is not None and not self._ready.cancelled():
            self._ready.exception()  # retrieved: no "never retrieved" warning


@contextlib.asynccontextmanager
async def _transport(config: MCPServerConfig) -> AsyncIterator[Any]:
    import httpx2
    from mcp import StdioServerParameters
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    headers = dict(config.headers)
    if config.transport == "stdio":
        assert config.command is not None
        yield StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env) or None
        )
    elif config.transport == "sse":
        assert config.url is not None
        yield sse_client(config.url, headers=headers, timeout=config.timeout)
    else:
        assert config.url is not None
        timeout = httpx2.Timeout(config.timeout, read=max(config.timeout, 60.0))
        pinned = pinning_transport(httpx2, config.policy) if config.policy is not None else None
        async with httpx2.AsyncClient(headers=headers, timeout=timeout, transport=pinned) as http:
            yield streamable_http_client(config.url, http_client=http)


class _Breaker:
    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def check(self, name: str) -> None:
        if self.failures >= FAILURES_TO_OPEN and time.monotonic() < self.open_until:
            raise MCPCallError(
                f"MCP server {name!r} failed {self.failures} times in a row; not calling it "
                f"again for {self.open_until - time.monotonic():.0f} s",
                retryable=True, error_class="mcp_circuit_open", reached=False,
            )  # fmt: skip

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= FAILURES_TO_OPEN:
            self.open_until = time.monotonic() + COOLDOWN

    def succeeded(self) -> None:
        self.failures = 0


class MCPClients:
    """The process's MCP sessions (one per configured server), opened on first use."""

    def __init__(
        self,
        configs: tuple[MCPServerConfig, ...],
        discovery: Discovery | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._configs = {config.name: config for config in configs}
        self._discovery = discovery
        self._timeout = timeout  # per call, for discovered instances
        self._turns: dict[tuple[uuid.UUID, str], int] = {}
        self._sessions: dict[str, _Session] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._tools: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()

    def names(self) -> list[str]:
        return sorted(self._configs)

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        timeout: float | None = None,
        tenant_id: uuid.UUID | None = None,
    ) -> ToolOutput:
        attributes = {"mcp.method.name": "tools/call", "gen_ai.tool.name": tool,
                      "mcp.server": server}  # fmt: skip
        with tracing.span(f"tools/call {tool}", kind="client", attributes=attributes):
            return await self._call_tool(server, tool, arguments, timeout, tenant_id)

    async def _call_tool(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        timeout: float | None,
        tenant_id: uuid.UUID | None,
    ) -> ToolOutput:
        started = time.perf_counter()
        try:
            result, instance = await self._with_session(
                server, lambda client, t: client.call_tool(tool, arguments, read_timeout_seconds=t),
                timeout, tenant_id,
            )  # fmt: skip
        except MCPCallError as exc:
            self._count(server, tool, exc.error_class, started)
            tracing.annotate({"error.type": exc.error_class}, error=str(exc))
            raise
        latency = round((time.perf_counter() - started) * 1000, 3)
        self._count(server, tool, "mcp_tool_error" if result.is_error else "ok", started)
        text = "\n".join(getattr(block, "text", "") for block in result.content).strip()
        if result.is_error:
            raise MCPCallError(
                f"{server}.{tool} failed: {text or 'the tool reported an error'}",
                retryable=False, error_class="mcp_tool_error",
            )  # fmt: skip
        data = result.structured_content
        if data is None:
            try:
                data = json.loads(text) if text else None
            except ValueError:
                data = text
        return ToolOutput(data, text, latency, instance)

    async def list_tools(
        self, server: str, refresh: bool = False, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        cache_key = server if server in self._configs else f"{tenant_id}/{server}"
        cached = self._tools.get(cache_key)
        if cached and not refresh and time.monotonic() - cached[0] < TOOLS_TTL:
            return cached[1]
        listed, _instance = await self._with_session(
            server, lambda client, _t: client.list_tools(cache_mode="refresh"), None, tenant_id
        )
        tools = [
            {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
            for t in listed.tools
        ]
        self._tools[cache_key] = (time.monotonic(), tools)
        return tools

    def _count(self, server: str, tool: str, outcome: str, started: float) -> None:
        """Labels stay bounded whatever a step names: a configured server is labelled by name,
        and its tool when the server ran it or listed it (`other` otherwise); instances found
        in the registry are tenants' own and all count as server `registry`, tool `other`."""
        if server in self._configs:
            listed = self._tools.get(server, (0.0, []))[1]
            known = outcome == "ok" or any(t["name"] == tool for t in listed)
            server_label, tool_label = server, tool if known else "other"
        else:
            server_label = "registry" if self._discovery is not None else "unknown"
            tool_label = "other"
        metrics.mcp_calls.labels(server_label, tool_label, outcome).inc()
        metrics.mcp_duration.labels(server_label).observe(time.perf_counter() - started)

    async def _with_session(
        self, server: str, call: Any, timeout: float | None, tenant_id: uuid.UUID | None
    ) -> tuple[Any, str | None]:
        config = self._configs.get(server)
        if config is not None:
            return await self._call(server, config, call, timeout), None
        if self._discovery is None or tenant_id is None:
            known = ", ".join(self.names()) or "none"
            raise MCPCallError(f"no MCP server named {server!r}; configured: {known}",
                               retryable=False, error_class="mcp_unknown_server")  # fmt: skip
        instances = await self._discovery.instances(tenant_id, server)
        if not instances:
            raise MCPCallError(
                f"no MCP server named {server!r} is configured, and the registry has no "
                f"healthy instance of it (services named {server!r} with metadata.protocol "
                "= mcp)", retryable=True, error_class="mcp_no_healthy_instance",
            )  # fmt: skip
        prefix = f"{tenant_id}/{server}@"
        await self._forget(prefix, {f"{prefix}{instance.id}" for instance in instances})
        turn = self._turns.get((tenant_id, server), 0)
        self._turns[(tenant_id, server)] = turn + 1
        start = turn % len(instances)
        failure: MCPCallError | None = None
        for instance in instances[start:] + instances[:start]:
            key = f"{prefix}{instance.id}"
            found = MCPServerConfig(key, "streamable_http", instance.url, timeout=self._timeout,
                                    policy=instance.policy)  # fmt: skip
            try:
                return await self._call(key, found, call, timeout), instance.id
            except MCPCallError as exc:
                if exc.reached:
                    raise
                failure = exc
        assert failure is not None
        raise failure

    async def _forget(self, prefix: str, keep: set[str]) -> None:
        """Close the sessions of instances the registry no longer offers."""
        async with self._lock:
            gone = [key for key in self._sessions if key.startswith(prefix) and key not in keep]
            sessions = [self._sessions.pop(key) for key in gone]
            for key in [k for k in self._breakers if k.startswith(prefix) and k not in keep]:
                del self._breakers[key]
        for session in sessions:
            await session.close()

    async def _call(
        self, server: str, config: MCPServerConfig, call: Any, timeout: float | None
    ) -> Any:
        breaker = self._breakers.setdefault(server, _Breaker())
        breaker.check(server)
        seconds = timeout or config.timeout
        failure: MCPCallError | None = None
        sent = False  # whether any attempt may have reached the server
        for _attempt in range(2):  # a broken session gets one fresh try
            session = await self._session(server, config)
            try:
                client = await session.open()
            except Exception as exc:  # no session: the call never left
                timed_out = isinstance(exc, TimeoutError)
                failure = _timed_out(server, seconds) if timed_out else _unreachable(server, exc)
                await self._drop(server, session)
                if timed_out:
                    break  # a server that hangs on the handshake will hang again
                continue
            from mcp import MCPError  # loaded by the session just opened

            try:
                async with asyncio.timeout(seconds + 1):  # the SDK's own timeout, and a net
                    result = await call(client, seconds)
            except MCPError as exc:
                if exc.code == REQUEST_TIMEOUT:
                    sent = True
                    failure = _timed_out(server, seconds)
                    break  # the session is fine; the server is slow
                failure = MCPCallError(f"{server}: {exc.message}", retryable=True,
                                       error_class="mcp_unavailable")  # fmt: skip
                if exc.code not in SESSION_LOST:
                    sent = True  # the server answered with an error
                    break
                # A lost session (the server restarted, or went away) did not run the call;
                # the fresh session's attempt says whether the server is still there.
            except TimeoutError:
                sent = True
                failure = _timed_out(server, seconds)
            except Exception as exc:  # transport failures of every kind: the server is away
                sent = sent or not _refused(exc)
                failure = _unreachable(server, exc)
            else:
                breaker.succeeded()
                return result
            await self._drop(server, session)
        breaker.failed()
        assert failure is not None
        failure.reached = sent
        raise failure

    async def _session(self, server: str, config: MCPServerConfig) -> _Session:
        async with self._lock:
            session = self._sessions.get(server)
            if session is None:
                session = self._sessions[server] = _Session(config)
            return session

    async def _drop(self, server: str, session: _Session) -> None:
        async with self._lock:
            if self._sessions.get(server) is session:
                del self._sessions[server]
        await session.close()


def _unreachable(server: str, exc: BaseException) -> MCPCallError:
    exc = _flatten(exc)
    return MCPCallError(f"{server} is unreachable: {type(exc).__name__}: {exc}",
                        retryable=True, error_class="mcp_unavailable")  # fmt: skip


def _refused(exc: BaseException) -> bool:
    """A failure to connect: the request cannot have arrived."""
    import httpx2  # loaded with the SDK, whose sessions fail this way

    exc = _flatten(exc)
    return isinstance(exc, httpx2.ConnectError | ConnectionRefusedError)


def _timed_out(server: str, seconds: float) -> MCPCallError:
    return MCPCallError(f"{server} did not answer within {seconds:g} s", retryable=True,
                        error_class="mcp_timeout")  # fmt: skip


def _flatten(exc: BaseException) -> BaseException:
    """Connection failures come out of the SDK's task groups wrapped in exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return exc.exceptions[0]
    return exc
