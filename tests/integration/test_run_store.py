"""The run store's transitions: one round trip on PostgreSQL, and optimistic concurrency —
a transition decided from a run that moved on writes nothing, and deciding again from the run
read afresh records each outcome once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from workflow_engine.db import Database
from workflow_engine.db.tables import events, tasks
from workflow_engine.engine import scheduler
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.queue import NewTask
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.runs import Origin, RunService, run_state
from workflow_engine.engine.scheduler import StepResult
from workflow_engine.engine.states import Outcome, RunStatus, StepStatus
from workflow_engine.engine.store import RunStore, TaskLease, Transition
from workflow_engine.engine.worker import Worker, WorkerOptions
from workflow_engine.nodes import NodeContext, node, registry

CALL = "SELECT workflow_engine_run_transition($1::jsonb)"
NOW = datetime(2026, 12, 6, tzinfo=UTC)


@node("test.store.noop")
async def noop(ctx: NodeContext) -> dict[str, Any]:
    return {"step": ctx.step_id}


CHAIN = WorkflowDefinition.model_validate({
    "name": "store_chain",
    "steps": [
        {"id": "a", "uses": "test.store.noop"},
        {"id": "b", "uses": "test.store.noop", "needs": ["a"]},
        {"id": "c", "uses": "test.store.noop", "needs": ["b"]},
    ],
    "output": {"last": "{{ steps.c.output.step }}"},
})  # fmt: skip
FAN = WorkflowDefinition.model_validate({
    "name": "store_fan",
    "steps": [
        {"id": "x", "uses": "test.store.noop"},
        {"id": "y", "uses": "test.store.noop"},
        {"id": "join", "uses": "test.store.noop", "needs": ["x", "y"]},
    ],
})  # fmt: skip


@pytest.fixture
async def runs(database: Database) -> RunService:
    catalog = DefinitionCatalog(registry)
    catalog.register(CHAIN, "test")
    catalog.register(FAN, "test")
    return RunService(database, catalog)


async def _trigger(runs: RunService, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    run, _ = await runs.trigger(tenant_id, name, {}, version=None, idempotency_key=None,
                                origin=Origin("test", None))  # fmt: skip
    return run.id


async def _until_finished(store: RunStore, run_id: uuid.UUID) -> RunRecord:
    for _ in range(500):
        found = await store.read(run_id)
        assert found is not None
        if found[0].status in ("completed", "failed", "cancelled"):
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the run did not finish")


@pytest.fixture
async def worker(database: Database) -> AsyncIterator[Worker]:
    running = Worker(database, registry, WorkerOptions(concurrency=4))
    await running.start()
    yield running
    await running.stop(grace=5)


async def test_each_transition_of_a_three_step_run_is_one_round_trip(
    postgres_database: Database, tenant_id: uuid.UUID
) -> None:
    db = postgres_database
    # Per connection, what happened to it: taken from the pool, statements (as asyncpg sends
    # them, and as SQLAlchemy executes them), given back.
    sent: list[tuple[int, str]] = []

    def driver_of(dbapi_connection: Any) -> int:
        return id(dbapi_connection.driver_connection)

    @event.listens_for(db.engine.sync_engine, "connect")
    def log_statements(dbapi_connection: Any, _record: Any) -> None:
        key = driver_of(dbapi_connection)
        dbapi_connection.driver_connection.add_query_logger(
            lambda query: sent.append((key, query.query))
        )

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def log_executed(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append((driver_of(conn.connection.dbapi_connection), statement))

    @event.listens_for(db.engine.sync_engine, "checkout")
    def taken(dbapi_connection: Any, *_: Any) -> None:
        sent.append((driver_of(dbapi_connection), "<checkout>"))

    @event.listens_for(db.engine.sync_engine, "checkin")
    def given_back(dbapi_connection: Any, *_: Any) -> None:
        sent.append((driver_of(dbapi_connection), "<checkin>"))

    catalog = DefinitionCatalog(registry)
    catalog.register(CHAIN, "test")
    runs = RunService(db, catalog)
    run_id = await _trigger(runs, tenant_id, "store_chain")
    sent.clear()  # from here on: the worker's work, and this test's polling reads
    worker = Worker(db, registry, WorkerOptions(concurrency=4))
    await worker.start()
    try:
        run = await _until_finished(RunStore(db), run_id)
    finally:
        await worker.stop(grace=5)

    assert run.status == "completed"
    assert run.output == {"last": "c"}
    calls = [connection for connection, statement in sent if statement == CALL]
    # a started; a completed + b started; b completed + c started; c completed + run completed
    assert len(calls) == 4
    # While a connection that carried transitions was out of the pool, nothing but them was
    # sent on it: no BEGIN or COMMIT, no liveness check, no read, no second statement.
    windows: dict[int, list[str]] = {}
    for connection, statement in sent:
        if statement == "<checkout>":
            windows[connection] = []
        elif statement == "<checkin>":
            window = windows.pop(connection, [])
            if CALL in window:
                assert set(window) == {CALL}, window
        elif connection in windows:
            windows[connection].append(statement)
    async with db.read() as conn:
        kinds = [row.event_type for row in await conn.execute(
            select(events.c.event_type).where(events.c.aggregate_id == str(run_id))
            .order_by(events.c.version))]  # fmt: skip
    assert kinds == [
        "WorkflowTriggered",
        "StepStarted", "StepCompleted", "StepStarted", "StepCompleted", "StepStarted",
        "StepCompleted", "WorkflowCompleted",
    ]  # fmt: skip


async def test_a_raced_transition_writes_nothing_and_is_decided_again_from_a_fresh_read(
    database: Database, runs: RunService, tenant_id: uuid.UUID
) -> None:
    store = RunStore(database)
    run_id = await _trigger(runs, tenant_id, "store_fan")
    # Two workers start x and y, then finish them together, each deciding from the run as it
    # was before either outcome was recorded.
    held = await _lease_all(database, run_id)
    found = await store.read(run_id)
    assert found is not None
    snapshot, _ = found
    for step_id in ("x", "y"):
        started = await store.record(Transition(
            snapshot, [(RunEvent.step_started, {"step_id": step_id, "attempt": 1})], {},
            renew_task=held[step_id], owner="w", expect_version=True,
        ))  # fmt: skip
        assert started.status == "ok"
        assert started.run is not None
        snapshot = started.run
    first = await store.record(_settle(snapshot, "x", held["x"]))
    raced = await store.record(_settle(snapshot, "y", held["y"]))

    assert first.status == "ok"
    assert raced.status == "conflict"  # decided before x's outcome: nothing written
    assert await _count_events(database, run_id, "StepCompleted") == 1
    assert await _join_tasks(database, run_id) == 0

    found = await store.read(run_id)  # the re-read
    assert found is not None
    fresh, holders = found
    assert fresh.version == snapshot.version + 1
    assert holders == {"y"}
    again = await store.record(_settle(fresh, "y", held["y"]))

    assert again.status == "ok"
    assert await _count_events(database, run_id, "StepCompleted") == 2
    assert await _join_tasks(database, run_id) == 1  # the join became ready exactly once
    assert again.run is not None
    assert again.run.steps[1].status == StepStatus.completed


async def test_log_entries_appended_meanwhile_do_not_make_a_decision_conflict(
    database: Database, runs: RunService, tenant_id: uuid.UUID
) -> None:
    store = RunStore(database)
    run_id, held, snapshot = await _started_fan(store, runs, tenant_id)
    # y's heartbeat appends what its node logged, at whatever version the run has reached.
    entries = [{"level": "info", "message": "working", "fields": {}, "at": NOW.isoformat()}]
    logged = await store.record(Transition(
        snapshot, [(RunEvent.step_logged, {"step_id": "y", "attempt": 1, "entries": entries})],
        {}, renew_task=held["y"], owner="w", expect_version=False,
    ))  # fmt: skip
    assert logged.status == "ok"
    settled = await store.record(_settle(snapshot, "x", held["x"]))  # decided before the logs

    assert settled.status == "ok"
    assert settled.run is not None
    assert settled.run.version == snapshot.version + 2
    assert [e.version for e in settled.events] == [snapshot.version + 2]
    assert await _count_events(database, run_id, "StepCompleted") == 1


async def test_a_transition_whose_lease_was_lost_writes_nothing(
    database: Database, runs: RunService, tenant_id: uuid.UUID
) -> None:
    store = RunStore(database)
    run_id, held, snapshot = await _started_fan(store, runs, tenant_id)
    stolen = TaskLease(held["x"].id, "another worker")
    lost = await store.record(_settle(snapshot, "x", stolen))

    assert lost.status == "lost"
    assert await _count_events(database, run_id, "StepCompleted") == 0
    found = await store.read(run_id)
    assert found is not None
    assert found[0].version == snapshot.version


async def test_the_worker_records_one_outcome_per_step_when_siblings_finish_together(
    database: Database, runs: RunService, tenant_id: uuid.UUID, worker: Worker
) -> None:
    run_ids = [await _trigger(runs, tenant_id, "store_fan") for _ in range(5)]
    store = RunStore(database)
    for run_id in run_ids:
        run = await _until_finished(store, run_id)
        assert run.status == RunStatus.completed
        assert await _count_events(database, run_id, "StepCompleted") == 3
        async with database.read() as conn:
            kinds = [row.event_type for row in await conn.execute(
                select(events.c.event_type).where(events.c.aggregate_id == str(run_id))
                .order_by(events.c.version))]  # fmt: skip
        assert kinds.count("StepStarted") == 3, kinds


async def _started_fan(
    store: RunStore, runs: RunService, tenant_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, TaskLease], RunRecord]:
    """A fan run whose ready tasks (x and y) worker "w" has leased, and the run as read then."""
    run_id = await _trigger(runs, tenant_id, "store_fan")
    held = await _lease_all(store.db, run_id)
    found = await store.read(run_id)
    assert found is not None
    return run_id, held, found[0]


def _settle(run: RunRecord, step_id: str, lease: TaskLease) -> Transition:
    definition = FAN
    decision = scheduler.settle(
        definition, run_state(run), step_id, 1, StepResult(Outcome.completed, output={}),
        now=NOW,
    )  # fmt: skip
    ready = [NewTask(run.tenant_id, run.id, s) for s in decision.ready]
    return Transition(run, decision.events, {}, finish_task=lease, enqueue=ready, owner="w")


async def _lease_all(database: Database, run_id: uuid.UUID) -> dict[str, TaskLease]:
    """Lease the run's ready tasks to worker "w" (as its claim would)."""
    async with database.transaction() as conn:
        claimed = await conn.execute(
            update(tasks)
            .where(tasks.c.run_id == run_id)
            .values(lease_owner="w", lease_expires_at=datetime.now(UTC) + timedelta(minutes=1))
            .returning(tasks.c.id, tasks.c.step_id)
        )
        return {row.step_id: TaskLease(row.id, "w") for row in claimed}


async def _count_events(database: Database, run_id: uuid.UUID, kind: str) -> int:
    async with database.read() as conn:
        found = await conn.execute(
            select(func.count()).where(
                events.c.aggregate_id == str(run_id), events.c.event_type == kind
            )
        )
        return int(found.scalar_one())


async def _join_tasks(database: Database, run_id: uuid.UUID) -> int:
    async with database.read() as conn:
        found = await conn.execute(
            select(func.count()).where(tasks.c.run_id == run_id, tasks.c.step_id == "join")
        )
        return int(found.scalar_one())
