"""The events core on SQLite and PostgreSQL: versions, concurrent appends, gap-free reading."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC

import pytest
from sqlalchemy import text

from workflow_engine.db import Database
from workflow_engine.errors import ConcurrencyConflict, Conflict, InvalidInput
from workflow_engine.events import EventStore, NewEvent, append_events


def _event(n: int) -> NewEvent:
    return NewEvent("ThingHappened", {"n": n}, {"actor": "test"})


async def test_append_assigns_versions_and_reads_back_in_order(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    first = await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="order-1",
        new_events=[_event(1), _event(2)],
        expected_version=0,
    )
    second = await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="order-1",
        new_events=[_event(3)],
        expected_version=2,
    )
    assert [e.version for e in first + second] == [1, 2, 3]
    assert first[0].position < first[1].position < second[0].position
    events = await store.read_aggregate(tenant_id, "order-1")
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert events[0].metadata == {"actor": "test"}
    assert events[0].recorded_at.tzinfo is UTC
    assert [
        e.version for e in await store.read_aggregate(tenant_id, "order-1", from_version=2)
    ] == [
        2,
        3,
    ]


async def test_stale_expected_version_fails_and_writes_nothing(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="o",
        new_events=[_event(1), _event(2)],
        expected_version=0,
    )
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="o",
            new_events=[_event(3)],
            expected_version=1,
        )
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert len(await store.read_aggregate(tenant_id, "o")) == 2


async def test_aggregate_type_cannot_change(database: Database, tenant_id: uuid.UUID) -> None:
    store = EventStore(database)
    await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="x",
        new_events=[_event(1)],
        expected_version=None,
    )
    with pytest.raises(Conflict, match="is a 'order', not a 'invoice'"):
        await store.append(
            tenant_id=tenant_id,
            aggregate_type="invoice",
            aggregate_id="x",
            new_events=[_event(2)],
            expected_version=None,
        )


async def test_tenants_do_not_see_each_others_aggregates(database: Database) -> None:
    store = EventStore(database)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    for tenant in (alice, bob):
        await store.append(
            tenant_id=tenant,
            aggregate_type="order",
            aggregate_id="shared-name",
            new_events=[_event(1)],
            expected_version=0,
        )
    assert len(await store.read_aggregate(alice, "shared-name")) == 1
    assert {e.tenant_id for e in await store.read_log(tenant_id=bob)} == {bob}


async def _race(database: Database, tenant_id: uuid.UUID, expected: int | None) -> list[object]:
    """Two appenders to one aggregate; the first holds its transaction open while the second
    tries (on PostgreSQL the second blocks on the unique index, on SQLite on the write lock)."""
    first_appended, release = asyncio.Event(), asyncio.Event()

    async def appender(n: int, hold: bool) -> int:
        async with database.transaction() as conn:
            recorded = await append_events(
                conn,
                tenant_id=tenant_id,
                aggregate_type="order",
                aggregate_id="race",
                new_events=[_event(n)],
                expected_version=expected,
            )
            if hold:
                first_appended.set()
                await release.wait()
            return recorded[0].version

    first = asyncio.create_task(appender(1, hold=True))
    await first_appended.wait()
    second = asyncio.create_task(appender(2, hold=False))
    await asyncio.sleep(0.3)
    release.set()
    return list(await asyncio.gather(first, second, return_exceptions=True))


async def test_of_two_concurrent_appenders_for_one_version_exactly_one_wins(
    database: Database, tenant_id: uuid.UUID
) -> None:
    results = await _race(database, tenant_id, expected=0)
    assert results[0] == 1
    assert isinstance(results[1], ConcurrencyConflict), results
    stored = await EventStore(database).read_aggregate(tenant_id, "race")
    assert [(e.version, e.data["n"]) for e in stored] == [(1, 1)]


async def test_concurrent_appenders_without_expected_version_both_land_in_order(
    database: Database, tenant_id: uuid.UUID
) -> None:
    results = await _race(database, tenant_id, expected=None)
    assert results == [1, 2]
    stored = await EventStore(database).read_aggregate(tenant_id, "race")
    assert [(e.version, e.data["n"]) for e in stored] == [(1, 1), (2, 2)]


async def test_conflict_leaves_the_callers_transaction_usable(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="a",
        new_events=[_event(1)],
        expected_version=0,
    )
    async with database.transaction() as conn:
        with pytest.raises(ConcurrencyConflict):
            await append_events(
                conn,
                tenant_id=tenant_id,
                aggregate_type="order",
                aggregate_id="a",
                new_events=[_event(2)],
                expected_version=0,
            )
        await append_events(
            conn,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="b",
            new_events=[_event(3)],
            expected_version=0,
        )
    assert len(await store.read_aggregate(tenant_id, "b")) == 1


async def test_reader_follows_the_log_from_any_position(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    for n in range(5):
        await store.append(
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id=f"o{n}",
            new_events=[_event(n)],
            expected_version=0,
        )
    everything = await store.read_log(tenant_id=tenant_id)
    assert [e.data["n"] for e in everything] == [0, 1, 2, 3, 4]
    after_second = await store.read_log(after=everything[1].position, tenant_id=tenant_id)
    assert [e.data["n"] for e in after_second] == [2, 3, 4]
    page = await store.read_log(after=everything[1].position, limit=2, tenant_id=tenant_id)
    assert [e.data["n"] for e in page] == [2, 3]
    assert await store.read_log(after=everything[-1].position, tenant_id=tenant_id) == []


async def test_reader_never_skips_an_event_committed_after_a_later_position(
    database: Database, tenant_id: uuid.UUID
) -> None:
    """Transaction A takes a position and stays open; B appends after it and commits first.

    A reader must not hand out B's event while A is open (on SQLite B simply waits for A);
    once A commits, the reader returns both, A's first, with nothing skipped.
    """
    store = EventStore(database)
    async with database.write_connection() as conn_a:
        transaction_a = await conn_a.begin()
        [event_a] = await append_events(
            conn_a,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="slow",
            new_events=[_event(1)],
            expected_version=0,
        )
        appender_b = asyncio.create_task(
            store.append(
                tenant_id=tenant_id,
                aggregate_type="order",
                aggregate_id="fast",
                new_events=[_event(2)],
                expected_version=0,
            )
        )
        await asyncio.sleep(0.3)  # B commits now on PostgreSQL; it waits for A on SQLite
        assert await store.read_log(tenant_id=tenant_id) == []
        await transaction_a.commit()
    [event_b] = await appender_b
    assert event_a.position < event_b.position
    seen = await store.read_log(tenant_id=tenant_id)
    assert [e.event_id for e in seen] == [event_a.event_id, event_b.event_id]


async def test_reader_resuming_after_a_committed_event_still_gets_an_older_in_flight_one(
    postgres_database: Database, tenant_id: uuid.UUID
) -> None:
    """B's transaction id is older than A's but its position is newer (PostgreSQL only: SQLite
    serialises writers, so there positions always follow commit order).

    The reader may deliver B first (its transaction is below the horizon); resuming after B
    must still deliver A when A commits — no event is lost behind a cursor.
    """
    database = postgres_database
    store = EventStore(database)
    async with database.engine.connect() as conn_b, database.engine.connect() as conn_a:
        transaction_b = await conn_b.begin()
        await conn_b.execute(text("SELECT pg_current_xact_id()"))  # B's id is now the older
        transaction_a = await conn_a.begin()
        [event_a] = await append_events(
            conn_a,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="a",
            new_events=[_event(1)],
            expected_version=0,
        )
        [event_b] = await append_events(
            conn_b,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="b",
            new_events=[_event(2)],
            expected_version=0,
        )
        assert event_a.position < event_b.position
        await transaction_b.commit()
        first = await store.read_log(tenant_id=tenant_id)
        assert [e.event_id for e in first] == [event_b.event_id]
        await transaction_a.commit()
    rest = await store.read_log(after=first[-1].position, tenant_id=tenant_id)
    assert [e.event_id for e in rest] == [event_a.event_id]


async def test_positions_in_gaps_resume_at_the_nearest_event_below(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database)
    [first] = await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="g1",
        new_events=[_event(1)],
        expected_version=0,
    )
    async with database.engine.connect() as conn:  # takes a position, then rolls back
        transaction = await conn.begin()
        await append_events(
            conn,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="g2",
            new_events=[_event(2)],
            expected_version=0,
        )
        await transaction.rollback()
    [third] = await store.append(
        tenant_id=tenant_id,
        aggregate_type="order",
        aggregate_id="g3",
        new_events=[_event(3)],
        expected_version=0,
    )
    resumed = await store.read_log(after=third.position - 1, tenant_id=tenant_id)
    assert [e.event_id for e in resumed] == [third.event_id]
    assert (await store.read_log(after=first.position, tenant_id=tenant_id))[0] == third


@pytest.mark.parametrize(
    ("aggregate_id", "data", "message"),
    [
        ("ok", {"text": "nul\x00byte"}, "data.text contains the NUL character"),
        ("ok", {"ratio": float("nan")}, "data.ratio is nan"),
        ("ok", {"deep": [{"x": float("inf")}]}, "data.deep[0].x is inf"),
        ("ok", {"bad\x00key": 1}, "data key contains the NUL character"),
        ("x" * 201, {}, "aggregate_id must be 1 to 200 characters"),
        ("", {}, "aggregate_id must be 1 to 200 characters"),
    ],
)
async def test_what_postgresql_would_reject_is_invalid_input_on_both(
    database: Database, tenant_id: uuid.UUID, aggregate_id: str, data: dict[str, object],
    message: str,
) -> None:  # fmt: skip
    with pytest.raises(InvalidInput, match=re.escape(message)):
        await EventStore(database).append(
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id=aggregate_id,
            new_events=[NewEvent("Noted", data)],
            expected_version=None,
        )
    assert await EventStore(database).read_log(tenant_id=tenant_id) == []


async def test_following_from_the_head_never_misses_an_older_transaction(
    postgres_database: Database, tenant_id: uuid.UUID
) -> None:
    """T1 takes a position and stays open; T2 commits a higher one. A follower that starts at
    the log head (not at the highest position) still receives T1's event when it commits."""
    database = postgres_database
    store = EventStore(database)
    async with database.engine.connect() as conn_1:
        transaction_1 = await conn_1.begin()
        [early] = await append_events(
            conn_1,
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="t1",
            new_events=[_event(1)],
            expected_version=0,
        )
        [late] = await store.append(
            tenant_id=tenant_id,
            aggregate_type="order",
            aggregate_id="t2",
            new_events=[_event(2)],
            expected_version=0,
        )
        head = await store.log_head()
        assert head < late.key  # T2's event is not yet deliverable: T1 may come first
        await transaction_1.commit()
    followed = await store.read_log(after=head, tenant_id=tenant_id)
    assert [e.event_id for e in followed] == [early.event_id, late.event_id]


async def test_a_nested_write_on_sqlite_fails_at_once_instead_of_waiting_forever(
    database: Database, tenant_id: uuid.UUID
) -> None:
    if not database.is_sqlite:
        pytest.skip("PostgreSQL has row locks, not one writer: nesting is allowed there")
    async with database.transaction():
        with pytest.raises(RuntimeError, match="already open in this task"):
            async with database.transaction():
                pass
    async with database.transaction() as conn:  # the guard was released
        await conn.execute(text("SELECT 1"))
