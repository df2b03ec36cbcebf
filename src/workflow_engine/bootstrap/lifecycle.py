"""Service lifecycle — the seed's "Service Bootstrap".

A process is a set of declared services (database, event store, and later the worker, the
rate-limit store, the MCP pool, the registry checker, ...). Each names the services it depends
on; `ServiceBootstrapManager` starts them in dependency order, stops them in reverse, and asks
each for its health. An embedding application adds its own services the same way.

Guarantees:

- A missing dependency or a cycle is refused by `build()`, before anything starts.
- A *required* service that fails to start stops everything already started (in reverse) and
  raises `ServiceStartError`. An *optional* one is recorded as failed and start-up goes on;
  services that depend on it are skipped, since they could not work.
- `stop_all()` stops every started service exactly once, in reverse start order, even if some
  stops fail or time out; failures are logged, never raised.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from typing import Any, Protocol, Self, runtime_checkable

import structlog

logger = structlog.get_logger(__name__)


class HealthStatus(StrEnum):
    ok = "ok"
    degraded = "degraded"
    down = "down"


@dataclass(frozen=True)
class Health:
    """One service's answer to "are you well?"."""

    status: HealthStatus
    detail: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, detail: str | None = None, **data: Any) -> Health:
        return cls(HealthStatus.ok, detail, data)

    @classmethod
    def degraded(cls, detail: str, **data: Any) -> Health:
        return cls(HealthStatus.degraded, detail, data)

    @classmethod
    def down(cls, detail: str, **data: Any) -> Health:
        return cls(HealthStatus.down, detail, data)


@runtime_checkable
class Service(Protocol):
    """What the lifecycle needs of a component."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check_health(self) -> Health: ...


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    service: Service
    depends_on: tuple[str, ...] = ()
    required: bool = True


@dataclass(frozen=True)
class ServiceReport:
    """A service's health as `/health/detailed` shows it."""

    name: str
    required: bool
    status: HealthStatus
    latency_ms: float
    detail: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class ServiceState(StrEnum):
    pending = "pending"
    running = "running"
    failed = "failed"
    skipped = "skipped"
    stopped = "stopped"


class BootstrapError(Exception):
    """The declared services cannot form a valid start order."""


class ServiceStartError(Exception):
    """A required service failed to start; everything started before it has been stopped."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"service {name!r} failed to start: {cause}")
        self.name = name
        self.cause = cause


class ServiceBootstrapManagerBuilder:
    def __init__(self) -> None:
        self._specs: dict[str, ServiceSpec] = {}

    def add_service(
        self,
        name: str,
        service: Service,
        *,
        depends_on: Iterable[str] = (),
        required: bool = True,
    ) -> Self:
        if name in self._specs:
            raise BootstrapError(f"service {name!r} is declared twice")
        if not isinstance(service, Service):
            raise BootstrapError(f"service {name!r} lacks start(), stop() or check_health()")
        self._specs[name] = ServiceSpec(name, service, tuple(depends_on), required)
        return self

    def build(self) -> ServiceBootstrapManager:
        for spec in self._specs.values():
            missing = [dep for dep in spec.depends_on if dep not in self._specs]
            if missing:
                raise BootstrapError(
                    f"service {spec.name!r} depends on undeclared {', '.join(map(repr, missing))}"
                )
        graph = {spec.name: spec.depends_on for spec in self._specs.values()}
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise BootstrapError(f"services depend on each other in a cycle: {cycle}") from None
        return ServiceBootstrapManager([self._specs[name] for name in order])


class ServiceBootstrapManager:
    """Starts, stops and health-checks a process's services. Build one with `builder()`."""

    def __init__(self, ordered: list[ServiceSpec]) -> None:
        self._ordered = ordered
        self._states = {spec.name: ServiceState.pending for spec in ordered}
        self._started: list[ServiceSpec] = []
        self._shutdown = asyncio.Event()

    @staticmethod
    def builder() -> ServiceBootstrapManagerBuilder:
        return ServiceBootstrapManagerBuilder()

    @property
    def start_order(self) -> list[str]:
        return [spec.name for spec in self._ordered]

    def state(self, name: str) -> ServiceState:
        return self._states[name]

    def get(self, name: str) -> Service:
        for spec in self._ordered:
            if spec.name == name:
                return spec.service
        raise KeyError(name)

    async def start_all(self) -> None:
        for spec in self._ordered:
            unavailable = [
                dep for dep in spec.depends_on if self._states[dep] is not ServiceState.running
            ]
            if unavailable:
                self._states[spec.name] = ServiceState.skipped
                logger.warning("service skipped", service=spec.name, unavailable=unavailable)
                if spec.required:
                    await self.stop_all()
                    raise ServiceStartError(
                        spec.name, RuntimeError(f"needs {', '.join(unavailable)}")
                    )
                continue
            try:
                await spec.service.start()
            except Exception as exc:
                self._states[spec.name] = ServiceState.failed
                if spec.required:
                    logger.error("service failed to start", service=spec.name, error=str(exc))
                    await self.stop_all()
                    raise ServiceStartError(spec.name, exc) from exc
                logger.warning(
                    "optional service failed to start", service=spec.name, error=str(exc)
                )
                continue
            self._states[spec.name] = ServiceState.running
            self._started.append(spec)
            logger.debug("service started", service=spec.name)

    async def stop_all(self, timeout: float = 10.0) -> None:
        while self._started:
            spec = self._started.pop()
            try:
                async with asyncio.timeout(timeout):
                    await spec.service.stop()
            except Exception as exc:
                logger.error("service failed to stop", service=spec.name, error=repr(exc))
            self._states[spec.name] = ServiceState.stopped
            logger.debug("service stopped", service=spec.name)

    async def check_health(self, timeout: float = 2.0) -> list[ServiceReport]:
        """Every service's health, checked concurrently, each within `timeout` seconds."""
        return list(await asyncio.gather(*(self._check(spec, timeout) for spec in self._ordered)))

    async def _check(self, spec: ServiceSpec, timeout: float) -> ServiceReport:
        state = self._states[spec.name]
        if state is not ServiceState.running:
            return ServiceReport(spec.name, spec.required, HealthStatus.down, 0.0, f"{state}")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                health = await spec.service.check_health()
        except TimeoutError:
            health = Health.down(f"no answer within {timeout:g} s")
        except Exception as exc:
            # The endpoint is public: name the failure, keep its details (SQL, hosts) in the log.
            logger.warning("health check failed", service=spec.name, error=repr(exc))
            health = Health.down(f"check failed: {type(exc).__name__}")
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return ServiceReport(
            spec.name, spec.required, health.status, latency_ms, health.detail, health.data
        )

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def wait_for_shutdown(self) -> None:
        """Block until SIGTERM, SIGINT or `request_shutdown()`, then stop every service."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._shutdown.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                pass
        try:
            await self._shutdown.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop_all()
