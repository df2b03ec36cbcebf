"""The bootstrap API: dependency order, reverse stop, required vs optional failures, health."""

from __future__ import annotations

import asyncio

import pytest

from workflow_engine.bootstrap import (
    BootstrapError,
    Health,
    HealthStatus,
    ServiceBootstrapManager,
    ServiceStartError,
)
from workflow_engine.bootstrap.lifecycle import ServiceState


class Recorder:
    """A service that notes what happens to it in a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.health = Health.ok()

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError(f"{self.name} cannot connect")
        self.journal.append(f"start {self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")

    async def check_health(self) -> Health:
        return self.health


async def test_starts_in_dependency_order_and_stops_in_reverse() -> None:
    journal: list[str] = []
    manager = (
        ServiceBootstrapManager.builder()
        .add_service("worker", Recorder("worker", journal), depends_on=["events", "database"])
        .add_service("events", Recorder("events", journal), depends_on=["database"])
        .add_service("database", Recorder("database", journal))
        .build()
    )
    await manager.start_all()
    await manager.stop_all()
    assert journal == [
        "start database",
        "start events",
        "start worker",
        "stop worker",
        "stop events",
        "stop database",
    ]


async def test_failing_required_service_stops_the_started_ones_and_raises() -> None:
    journal: list[str] = []
    manager = (
        ServiceBootstrapManager.builder()
        .add_service("database", Recorder("database", journal))
        .add_service("cache", Recorder("cache", journal), depends_on=["database"])
        .add_service("broker", Recorder("broker", journal, fail_start=True), depends_on=["cache"])
        .add_service("api", Recorder("api", journal), depends_on=["broker"])
        .build()
    )
    with pytest.raises(ServiceStartError, match="'broker' failed to start: broker cannot connect"):
        await manager.start_all()
    assert journal == ["start database", "start cache", "stop cache", "stop database"]
    assert manager.state("api") is ServiceState.pending


async def test_failing_optional_service_is_reported_and_its_dependents_skipped() -> None:
    journal: list[str] = []
    manager = (
        ServiceBootstrapManager.builder()
        .add_service("database", Recorder("database", journal))
        .add_service("tracing", Recorder("tracing", journal, fail_start=True), required=False)
        .add_service(
            "exporter", Recorder("exporter", journal), depends_on=["tracing"], required=False
        )
        .build()
    )
    await manager.start_all()
    assert journal == ["start database"]
    assert manager.state("tracing") is ServiceState.failed
    assert manager.state("exporter") is ServiceState.skipped
    reports = {r.name: r for r in await manager.check_health()}
    assert reports["database"].status is HealthStatus.ok
    assert reports["tracing"].status is HealthStatus.down
    assert not reports["tracing"].required
    await manager.stop_all()
    assert journal == ["start database", "stop database"]


def test_missing_dependency_is_refused_at_build_time() -> None:
    builder = ServiceBootstrapManager.builder().add_service(
        "worker", Recorder("worker", []), depends_on=["queue"]
    )
    with pytest.raises(BootstrapError, match="'worker' depends on undeclared 'queue'"):
        builder.build()


def test_cycle_is_refused_at_build_time() -> None:
    builder = (
        ServiceBootstrapManager.builder()
        .add_service("a", Recorder("a", []), depends_on=["b"])
        .add_service("b", Recorder("b", []), depends_on=["c"])
        .add_service("c", Recorder("c", []), depends_on=["a"])
    )
    with pytest.raises(BootstrapError, match="cycle"):
        builder.build()


def test_duplicate_and_malformed_services_are_refused() -> None:
    builder = ServiceBootstrapManager.builder().add_service("a", Recorder("a", []))
    with pytest.raises(BootstrapError, match="declared twice"):
        builder.add_service("a", Recorder("a", []))
    with pytest.raises(BootstrapError, match="lacks start"):
        builder.add_service("b", object())  # type: ignore[arg-type]


async def test_slow_or_broken_health_checks_report_down_without_blocking() -> None:
    class Hanging(Recorder):
        async def check_health(self) -> Health:
            await asyncio.sleep(10)
            return Health.ok()

    class Broken(Recorder):
        async def check_health(self) -> Health:
            raise RuntimeError("boom")

    manager = (
        ServiceBootstrapManager.builder()
        .add_service("hanging", Hanging("hanging", []))
        .add_service("broken", Broken("broken", []))
        .build()
    )
    await manager.start_all()
    reports = {r.name: r for r in await manager.check_health(timeout=0.2)}
    assert reports["hanging"].status is HealthStatus.down
    assert reports["hanging"].detail == "no answer within 0.2 s"
    assert reports["broken"].detail == "check failed: RuntimeError"
    await manager.stop_all()


async def test_stop_failure_does_not_prevent_other_stops() -> None:
    journal: list[str] = []

    class BadStop(Recorder):
        async def stop(self) -> None:
            raise RuntimeError("stuck")

    manager = (
        ServiceBootstrapManager.builder()
        .add_service("database", Recorder("database", journal))
        .add_service("bad", BadStop("bad", journal), depends_on=["database"])
        .build()
    )
    await manager.start_all()
    await manager.stop_all()
    assert journal[-1] == "stop database"
    assert manager.state("bad") is ServiceState.stopped


async def test_wait_for_shutdown_stops_services_when_requested() -> None:
    journal: list[str] = []
    manager = ServiceBootstrapManager.builder().add_service("db", Recorder("db", journal)).build()
    await manager.start_all()
    waiter = asyncio.create_task(manager.wait_for_shutdown())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    manager.request_shutdown()
    await asyncio.wait_for(waiter, 2)
    assert journal == ["start db", "stop db"]
