"""Read models folded from the log: inline with appends, rebuilt by replay, caught up at start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.db import Database
from workflow_engine.db.tables import aggregates, events, projection_checkpoints
from workflow_engine.events import EventStore, NewEvent, Projection, RecordedEvent, append_events
from workflow_engine.events.projections import read_checkpoint, registry, replay


async def _catalogue(db: Database) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(aggregates).order_by(aggregates.c.tenant_id, aggregates.c.aggregate_id)
        )
        return [tuple(row) for row in rows]


async def _append(store: EventStore, tenant: uuid.UUID, kind: str, ident: str, n: int) -> None:
    await store.append(
        tenant_id=tenant, aggregate_type=kind, aggregate_id=ident,
        new_events=[NewEvent(f"{kind.title()}Changed", {"n": i}) for i in range(n)],
        expected_version=None,
    )  # fmt: skip


async def test_the_api_lists_the_tenants_aggregates_from_the_catalogue(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    operator = {"Authorization": f"Bearer {await accounts.token(Role.operator)}"}
    appended = [
        ("o-2", "OrderPlaced"), ("o-1", "OrderPlaced"), ("o-1", "OrderShipped"),
        ("inv-1", "InvoiceSent"),
    ]  # fmt: skip
    for aggregate_id, event_type in appended:
        kind = "invoice" if aggregate_id.startswith("inv") else "order"
        created = await client.post("/events", headers=operator, json={
            "aggregate_type": kind, "aggregate_id": aggregate_id, "event_type": event_type,
            "data": {},
        })  # fmt: skip
        assert created.status_code == 201, created.text

    first = await client.get(
        "/api/v1/aggregates", params={"aggregate_type": "order", "limit": 1}, headers=operator
    )
    assert first.status_code == 200, first.text
    [o1] = first.json()["items"]
    assert (o1["aggregate_id"], o1["version"], o1["last_event_type"]) == ("o-1", 2, "OrderShipped")
    assert o1["created_at"] < o1["updated_at"]
    second = await client.get(
        "/api/v1/aggregates",
        params={"aggregate_type": "order", "limit": 1, "cursor": first.json()["next_cursor"]},
        headers=operator,
    )
    assert [a["aggregate_id"] for a in second.json()["items"]] == ["o-2"]
    assert second.json()["next_cursor"] is None

    stranger = {"Authorization": f"Bearer {await accounts.token(Role.viewer)}"}
    theirs = await client.get("/api/v1/aggregates", headers=stranger)
    assert theirs.status_code == 200
    seen = {a["aggregate_id"] for a in theirs.json()["items"]}
    assert seen  # their own account's aggregates ...
    assert seen.isdisjoint({"o-1", "o-2", "inv-1"})  # ... and nothing of ours
    forged = await client.get("/api/v1/aggregates", params={"cursor": "bm9wZQ"}, headers=operator)
    assert forged.status_code == 422


async def test_replay_rebuilds_a_dropped_read_model_row_for_row(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    other_tenant = uuid.uuid4()
    await _append(store, tenant_id, "order", "o-1", 3)
    await _append(store, tenant_id, "order", "o-2", 1)
    await _append(store, other_tenant, "invoice", "i-1", 2)
    await _append(store, tenant_id, "order", "o-1", 2)
    before = await _catalogue(database)
    assert len(before) >= 3
    async with database.transaction() as conn:
        await conn.execute(delete(aggregates))
    assert await _catalogue(database) == []

    result = await replay(database, registry.get("aggregates"))

    assert result is not None
    assert await _catalogue(database) == before
    async with database.read() as conn:
        total = (await conn.execute(select(events.c.position))).all()
        checkpoint = await read_checkpoint(conn, "aggregates")
    assert result.events_folded == len(total)
    assert checkpoint is not None
    assert (checkpoint.position, checkpoint.events_folded) == (result.position, len(total))


async def test_the_catalogue_gives_the_same_row_whatever_order_events_arrive_in(
    database: Database, tenant_id: uuid.UUID
) -> None:
    """A rebuild may meet an aggregate's versions out of order (see projections.py)."""
    store = EventStore(database)
    await _append(store, tenant_id, "order", "o-1", 3)
    await _append(store, tenant_id, "order", "o-2", 3)
    folded = await store.read_aggregate(tenant_id, "o-2")
    catalogue = registry.get("aggregates")
    async with database.transaction() as conn:
        await conn.execute(delete(aggregates).where(aggregates.c.aggregate_id == "o-2"))
        for event in reversed(folded):
            await catalogue.apply(conn, event)
    rows = {row[1]: row[2:] for row in await _catalogue(database) if row[0] == tenant_id}
    assert rows["o-2"][:3] == ("order", 3, "OrderChanged")
    assert rows["o-2"][-2:] == (folded[0].recorded_at, folded[-1].recorded_at)
    assert rows["o-2"][3] == folded[-1].position


async def test_a_rolled_back_append_leaves_no_trace_in_read_models(
    database: Database, tenant_id: uuid.UUID
) -> None:
    async def append_then_fail() -> None:
        async with database.transaction() as conn:
            await append_events(
                conn, tenant_id=tenant_id, aggregate_type="order", aggregate_id="o-9",
                new_events=[NewEvent("OrderPlaced", {})], expected_version=0,
            )  # fmt: skip
            raise RuntimeError("the caller's work failed after the append")

    with pytest.raises(RuntimeError):
        await append_then_fail()
    rows = [row for row in await _catalogue(database) if row[0] == tenant_id]
    assert rows == []


# --- a projection of the test's own -------------------------------------------------------


class Tally(Projection):
    """Counts `tally` events per tenant; can pause inside a rebuild on request."""

    name = "test_tally"
    version = 1
    tables: tuple[Table, ...] = ()

    def __init__(self) -> None:
        self.pause_next_fold = False
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    def wants(self, event: RecordedEvent) -> bool:
        return event.aggregate_type == "tally"

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        if self.pause_next_fold:
            self.pause_next_fold = False
            self.paused.set()
            await self.resume.wait()
        # Read, then write: the shape of many folds, and the one a rebuild must order against.
        [table] = self.tables
        mine = table.c.tenant_id == event.tenant_id
        count = (await conn.execute(select(table.c.count).where(mine))).scalar_one_or_none()
        if count is None:
            await conn.execute(
                table.insert().values(tenant_id=event.tenant_id, count=1, last=event.event_type)
            )
        else:
            await conn.execute(table.update().where(mine).values(count=count + 1))


@asynccontextmanager
async def _tally_table(db: Database) -> AsyncIterator[Table]:
    table = Table(
        f"test_tally_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("tenant_id", Uuid(), primary_key=True),
        Column("count", Integer(), nullable=False),
        Column("last", String(200), nullable=False),
    )
    async with db.transaction() as conn:
        await conn.run_sync(table.create)
    try:
        yield table
    finally:
        async with db.transaction() as conn:
            await conn.run_sync(table.drop)
            await conn.execute(
                delete(projection_checkpoints).where(projection_checkpoints.c.name == Tally.name)
            )


@pytest.fixture
async def tally_table(database: Database) -> AsyncIterator[Table]:
    async with _tally_table(database) as table:
        yield table


@pytest.fixture
async def pg_tally(postgres_database: Database) -> AsyncIterator[Tally]:
    """The tally projection, registered, with its table in the session's PostgreSQL database."""
    async with _tally_table(postgres_database) as table:

        class TallyHere(Tally):
            tables = (table,)

        with registry.registered(TallyHere()) as projection:
            assert isinstance(projection, Tally)
            yield projection


async def _counts(db: Database, table: Table) -> dict[uuid.UUID, int]:
    async with db.read() as conn:
        return {row.tenant_id: row.count for row in await conn.execute(select(table))}


async def test_a_new_projection_is_built_from_the_log_when_the_server_starts(
    database_url: str, database: Database, tenant_id: uuid.UUID, tmp_path: Path,
    tally_table: Table,
) -> None:  # fmt: skip
    store = EventStore(database)
    await _append(store, tenant_id, "tally", "t-1", 3)  # before the projection exists
    await _append(store, tenant_id, "order", "o-1", 2)

    class TallyV1(Tally):
        tables = (tally_table,)

    class TallyV2(TallyV1):
        version = 2

    with registry.registered(TallyV1()):
        async with running(build_app(database_url, tmp_path)):
            assert (await _counts(database, tally_table))[tenant_id] == 3
            await _append(store, tenant_id, "tally", "t-2", 1)  # folded inline
            assert (await _counts(database, tally_table))[tenant_id] == 4
        async with running(build_app(database_url, tmp_path)):  # nothing stale: no rebuild
            async with database.read() as conn:
                kept = await read_checkpoint(conn, Tally.name)
            assert kept is not None
            assert (kept.version, kept.events_folded) == (1, 3)

    async with database.transaction() as conn:  # a fold change would make the model wrong
        await conn.execute(tally_table.update().values(count=0))
    with registry.registered(TallyV2()):
        async with running(build_app(database_url, tmp_path)):
            assert (await _counts(database, tally_table))[tenant_id] == 4
            async with database.read() as conn:
                rebuilt = await read_checkpoint(conn, Tally.name)
            assert rebuilt is not None
            assert (rebuilt.version, rebuilt.events_folded) == (2, 4)


async def test_replay_sees_events_committed_above_an_older_open_transaction(
    postgres_database: Database, tenant_id: uuid.UUID, pg_tally: Tally
) -> None:
    """An older transaction still in flight hides newer commits from log followers (they stay
    below its horizon); a rebuild must not lose them."""
    store = EventStore(postgres_database)
    async with postgres_database.write_connection() as older:
        await older.begin()
        await older.execute(text("SELECT pg_current_xact_id()"))  # takes the older txid
        await _append(store, tenant_id, "tally", "t-1", 2)  # commits above it
        await replay(postgres_database, pg_tally)
        assert (await _counts(postgres_database, pg_tally.tables[0]))[tenant_id] == 2
        await older.rollback()


async def test_an_append_during_a_replay_waits_and_lands_in_the_rebuilt_model(
    postgres_database: Database, tenant_id: uuid.UUID, pg_tally: Tally
) -> None:
    store = EventStore(postgres_database)
    await _append(store, tenant_id, "tally", "t-1", 2)
    [table] = pg_tally.tables
    async with postgres_database.transaction() as conn:  # a damaged model, to be rebuilt
        await conn.execute(table.update().values(count=100))
    pg_tally.pause_next_fold = True
    rebuilding = asyncio.create_task(replay(postgres_database, pg_tally))
    await asyncio.wait_for(pg_tally.paused.wait(), 10)
    appending = asyncio.create_task(_append(store, tenant_id, "tally", "t-2", 1))
    await asyncio.sleep(0.5)
    assert not appending.done()  # it waits for the rebuild, before reading the old model
    pg_tally.resume.set()
    await asyncio.wait_for(asyncio.gather(rebuilding, appending), 10)
    assert (await _counts(postgres_database, table))[tenant_id] == 3  # not 101


async def test_an_append_in_flight_when_a_replay_starts_is_not_lost(
    postgres_database: Database, tenant_id: uuid.UUID, pg_tally: Tally
) -> None:
    store = EventStore(postgres_database)
    await _append(store, tenant_id, "tally", "t-1", 1)
    async with postgres_database.write_connection() as writer:
        await writer.begin()
        await append_events(
            writer, tenant_id=tenant_id, aggregate_type="tally", aggregate_id="t-2",
            new_events=[NewEvent("TallyChanged", {})], expected_version=0,
        )  # fmt: skip
        rebuilding = asyncio.create_task(replay(postgres_database, pg_tally))
        await asyncio.sleep(0.5)
        assert not rebuilding.done()  # the writer's fold holds the table
        await writer.commit()
    await asyncio.wait_for(rebuilding, 10)
    assert (await _counts(postgres_database, pg_tally.tables[0]))[tenant_id] == 2
