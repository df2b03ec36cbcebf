"""Node types: the Python functions steps run, registered by name.

    from workflow_engine.nodes import NodeContext, node

    @node("crm.lookup")
    async def lookup(ctx: NodeContext, *, email: str) -> dict:
        ctx.log.info("looking up", email=email)
        return {"customer": ...}

A node receives the step's evaluated `with` arguments as keyword arguments and returns a JSON
value, the step's output. It raises `StepError` (retryable) or `FatalStepError` (never
retried) to fail with a message of its own; any other exception fails the attempt as
retryable, with the exception's class as the error class.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from workflow_engine.engine import waits
from workflow_engine.engine.deltas import DeltaPublisher, NoDeltas
from workflow_engine.integrations.llm.providers import LLMSettings
from workflow_engine.integrations.mcp import MCPClients
from workflow_engine.nodes.journal import AttemptJournal, StepJournal
from workflow_engine.usage.meter import UNMETERED, UsageMeter

NodeFunction = Callable[..., Coroutine[Any, Any, Any]]


class StepError(Exception):
    """A step attempt failed; retried if its retry policy allows. `error_class` names the kind
    of failure for `retry.retry_on` (the exception's class name by default)."""

    retryable = True

    def __init__(self, message: str, *, error_class: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class or type(self).__name__


class FatalStepError(StepError):
    """A failure no retry can fix (bad arguments, a refused request): the step fails at once."""

    retryable = False


class RunLogger(Protocol):
    def debug(self, message: str, **fields: Any) -> None: ...
    def info(self, message: str, **fields: Any) -> None: ...
    def warning(self, message: str, **fields: Any) -> None: ...
    def error(self, message: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class NodeSettings:
    """The server settings core nodes obey (nodes do not read the configuration themselves)."""

    # Hosts `http.request` may call: exact names, `*.example.com`, or `*` for any.
    http_allowed_hosts: tuple[str, ...] = ()
    http_max_response_bytes: int = 1024 * 1024
    llm: LLMSettings = field(default_factory=LLMSettings)


@dataclass
class NodeContext:
    """What a node knows of the run it works for."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_name: str
    step_id: str
    attempt: int
    log: RunLogger
    # Set when the run is cancelled; the worker also cancels the node's task within a second.
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    settings: NodeSettings = field(default_factory=NodeSettings)
    # The worker's MCP sessions (`mcp.call`); none configured unless the worker has some.
    mcp: MCPClients = field(default_factory=lambda: MCPClients(()))
    # What the node recorded in earlier attempts of this step, and records as it goes.
    journal: StepJournal = field(default_factory=AttemptJournal)
    # Records the node's LLM calls and refuses one once a daily budget of the tenant is spent
    # (`usage/`); without a worker, records nothing and admits everything.
    usage: UsageMeter = UNMETERED
    # Streamed text of the step, shown live on the run's streams and never stored
    # (`engine/deltas.py`): pass `deltas.publish` as an LLM request's `on_delta`.
    deltas: DeltaPublisher = field(default_factory=NoDeltas)


class NodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeFunction] = {}

    def register(self, name: str, function: NodeFunction) -> NodeFunction:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"node {name!r} must be an async function")
        if name in waits.PRIMITIVES:
            raise ValueError(f"{name!r} is a step the engine carries out itself, not a node type")
        if name in self._nodes and self._nodes[name] is not function:
            raise ValueError(f"a node type named {name!r} is already registered")
        self._nodes[name] = function
        return function

    def unregister(self, name: str) -> None:
        self._nodes.pop(name, None)

    @contextmanager
    def registered(self, name: str, function: NodeFunction) -> Iterator[NodeFunction]:
        """Register for the duration of a block (tests)."""
        self.register(name, function)
        try:
            yield function
        finally:
            self.unregister(name)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def get(self, name: str) -> NodeFunction:
        return self._nodes[name]

    def names(self) -> list[str]:
        return sorted(self._nodes)

    def items(self) -> list[tuple[str, NodeFunction]]:
        return sorted(self._nodes.items())


registry = NodeRegistry()
"""The process's node types: the core ones, and those of `NODE_MODULES`."""


def node(name: str) -> Callable[[NodeFunction], NodeFunction]:
    """Register the decorated async function as node type `name`."""

    def decorate(function: NodeFunction) -> NodeFunction:
        return registry.register(name, function)

    return decorate


PLUGIN_GROUP = "workflow_engine.nodes"


def load_node_types(modules: list[str]) -> None:
    """Load the node types installed packages declare in the `workflow_engine.nodes`
    entry-point group, then import each of `modules` (NODE_MODULES). Loading an entry point
    imports what it names (a module, or an attribute of one), whose `@node` decorators register
    the node types. One that cannot be loaded raises ImportError naming it: a server should not
    start without node types its definitions may use."""
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as exc:
            package = entry.dist.name if entry.dist is not None else "an installed package"
            raise ImportError(
                f"node plugin {entry.name!r} ({entry.value}) of {package} cannot be loaded: {exc}"
            ) from exc
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"NODE_MODULES: cannot import {module!r}: {exc}") from exc
