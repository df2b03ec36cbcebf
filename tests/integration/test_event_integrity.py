"""The tamper-evident event log: hash chains and seals catch every kind of edit, on SQLite and
PostgreSQL, and an untouched log (rollback gaps included) verifies as intact.

Tampering is done as an attacker with database access would: plain SQL on the events table,
bypassing the server. On PostgreSQL the module has a database of its own (a tampered log
would change what other tests' replays rebuild); each test works on one tenant of its own
and verifies that tenant only."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import create_database, drop_database, require_postgres
from tests.integration.conftest import Accounts, build_app, finished_run, running, trigger_run
from workflow_engine.auth.permissions import Role
from workflow_engine.auth.store import find_tenant
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade
from workflow_engine.events import chain
from workflow_engine.events.append import append_events
from workflow_engine.events.integrity import Verification, verify_log
from workflow_engine.events.seals import seal_next
from workflow_engine.events.store import NewEvent

WORKFLOWS = [
    {"name": "three", "steps": [
        {"id": "a", "uses": "transform", "with": {"n": 1}},
        {"id": "b", "uses": "transform", "needs": ["a"], "with": {"n": 2}},
        {"id": "c", "uses": "transform", "needs": ["b"], "with": {"n": 3}},
    ]},
]  # fmt: skip


@dataclass
class Log:
    db: Database
    tenant_id: uuid.UUID
    run_id: str
    # (aggregate, version) -> position, for the client aggregates `order-1` (4) and `order-2` (2)
    positions: dict[tuple[str, int], int]

    async def seal(self) -> None:
        while True:
            async with self.db.transaction() as conn:
                if await seal_next(conn) is None:
                    return

    async def verify(self) -> Verification:
        async with self.db.read() as conn:
            return await verify_log(conn, self.tenant_id)

    async def tamper(self, sql: str, **params: Any) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(text(sql), params)


async def _append(db: Database, tenant_id: uuid.UUID, aggregate: str, count: int) -> list[int]:
    async with db.transaction() as conn:
        recorded = await append_events(
            conn, tenant_id=tenant_id, aggregate_type="order", aggregate_id=aggregate,
            new_events=[NewEvent("OrderNoted", {"n": n, "note": "é ☃"}) for n in range(count)],
            expected_version=None,
        )  # fmt: skip
    return [event.position for event in recorded]


class OwnPostgres:
    """The module's own PostgreSQL database, made when a test first needs it."""

    def __init__(self) -> None:
        self.url: str | None = None

    async def get(self) -> str:
        if self.url is None:
            self.url = await create_database(require_postgres())
            await asyncio.to_thread(upgrade, to_async_url(self.url))
        return self.url


@pytest.fixture(scope="module")
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    own = OwnPostgres()
    yield own
    if own.url is not None:
        await drop_database(own.url)


@pytest.fixture
async def log(database_url: str, tmp_path: Path, own_postgres: OwnPostgres) -> AsyncIterator[Log]:
    if database_url.startswith("postgresql"):
        database_url = await own_postgres.get()
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, EVENT_SEAL_INTERVAL="3600")
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        headers = {"Authorization": f"Bearer {await accounts.token(Role.operator, tenant)}"}
        run_id = (await trigger_run(client, headers, "three"))["workflow_id"]
        assert (await finished_run(client, headers, run_id))["status"] == "completed"
        async with accounts.db.read() as conn:
            found = await find_tenant(conn, tenant)
        assert found is not None
        db = accounts.db
        positions: dict[tuple[str, int], int] = {}
        for aggregate, count in (("order-1", 2), ("order-2", 2), ("order-1", 2)):
            start = sum(1 for key in positions if key[0] == aggregate) + 1
            for version, position in enumerate(
                await _append(db, found.id, aggregate, count), start
            ):
                positions[(aggregate, version)] = position
        yield Log(db, found.id, run_id, positions)


class Abandoned(Exception):
    pass


async def _abandoned_append(log: Log) -> None:
    """Takes positions, then rolls back: a gap in the log, not a deletion."""
    async with log.db.transaction() as conn:
        await append_events(
            conn, tenant_id=log.tenant_id, aggregate_type="order", aggregate_id="order-3",
            new_events=[NewEvent("OrderNoted", {"n": 0})], expected_version=None,
        )  # fmt: skip
        raise Abandoned


async def test_an_untouched_log_with_rollback_gaps_is_intact(log: Log) -> None:
    with pytest.raises(Abandoned):
        await _abandoned_append(log)
    await _append(log.db, log.tenant_id, "order-3", 1)
    await log.seal()
    await _append(log.db, log.tenant_id, "order-1", 1)  # after the last seal: chain only

    report = await log.verify()

    assert report.problems == []
    assert report.intact
    # Every event of the tenant was checked: the run's (written by the engine's own statements),
    # the client's, and the accounts' audit events.
    async with log.db.read() as conn:
        stored = await conn.execute(
            text("SELECT count(*), count(DISTINCT aggregate_id) FROM events WHERE tenant_id = :t"),
            {"t": _stored_uuid(log)},
        )
    assert (report.events, report.aggregates) == tuple(stored.one())
    assert report.events >= 4 + 2 + 1 + 1 + 8  # orders, and the run's start, steps and end
    assert report.seals >= 1


async def test_an_edited_event_is_named(log: Log) -> None:
    await log.seal()
    edited = log.positions[("order-1", 2)]
    await log.tamper("UPDATE events SET event_type = 'OrderRefunded' WHERE position = :p", p=edited)

    first = (await log.verify()).first()

    assert first is not None
    assert (first.kind, first.position) == ("altered", edited)
    assert "'order-1', version 2" in first.detail


async def test_an_edited_run_event_is_named(log: Log) -> None:
    """The engine's own appends (SQL functions on PostgreSQL) are chained as well."""
    async with log.db.read() as conn:
        position = (
            await conn.execute(
                text("SELECT position FROM events WHERE aggregate_id = :run AND version = 2"),
                {"run": log.run_id},
            )
        ).scalar_one()
    await log.tamper("UPDATE events SET version = 99 WHERE position = :p", p=position)

    problems = (await log.verify()).problems

    assert any(p.kind == "deleted" and "version 2 of" in p.detail for p in problems)
    assert any(p.kind == "altered" and p.position == position for p in problems)


async def test_a_deleted_event_in_the_middle_is_named(log: Log) -> None:
    await log.seal()
    await log.tamper("DELETE FROM events WHERE position = :p", p=log.positions[("order-1", 2)])

    first = (await log.verify()).first()

    assert first is not None
    assert (first.kind, first.position) == ("deleted", log.positions[("order-1", 3)])
    assert "version 2 of" in first.detail


async def test_a_deleted_last_event_is_caught_by_the_seal(log: Log) -> None:
    await log.seal()
    await log.tamper("DELETE FROM events WHERE position = :p", p=log.positions[("order-1", 4)])

    problems = (await log.verify()).problems

    assert [p.kind for p in problems] == ["deleted"]
    assert "'order-1', version 4" in problems[0].detail


async def test_a_deleted_aggregate_is_caught_by_the_seal(log: Log) -> None:
    await log.seal()
    await log.tamper(
        "DELETE FROM events WHERE tenant_id = :t AND aggregate_id = 'order-2'",
        t=_stored_uuid(log),
    )

    problems = (await log.verify()).problems

    assert sorted(p.detail.split(", ")[2] for p in problems) == ["version 1", "version 2"]
    assert {p.kind for p in problems} == {"deleted"}


async def test_a_reordered_pair_is_named(log: Log) -> None:
    await log.seal()
    second, third = log.positions[("order-1", 2)], log.positions[("order-1", 3)]
    # One row at a time: a single UPDATE swapping both would meet the primary key half-way
    # whenever PostgreSQL happens to visit the second row first.
    await log.tamper("UPDATE events SET position = -1 WHERE position = :a", a=second)
    await log.tamper("UPDATE events SET position = :a WHERE position = :b", a=second, b=third)
    await log.tamper("UPDATE events SET position = :b WHERE position = -1", b=third)

    first = (await log.verify()).first()

    assert first is not None
    assert (first.kind, first.position) == ("reordered", second)
    assert "'order-1', version 3" in first.detail


async def test_a_forged_event_that_extends_the_chain_is_caught_by_the_seal(log: Log) -> None:
    """An attacker who computes a valid hash and slips the event in among sealed ones."""
    await log.seal()
    head = log.positions[("order-1", 4)]
    forged_position = -7
    async with log.db.transaction() as conn:
        txid, prev_hash = (
            await conn.execute(
                text("SELECT txid, hash FROM events WHERE position = :p"), {"p": head}
            )
        ).one()
        forged: dict[str, Any] = {
            "event_id": uuid.uuid4(), "tenant_id": log.tenant_id, "aggregate_type": "order",
            "aggregate_id": "order-1", "version": 5, "event_type": "OrderRefunded",
            "schema_version": 1, "data": {"n": 5}, "metadata": {},
            "recorded_at": datetime.now(UTC),
        }  # fmt: skip
        digest = chain.link(prev_hash, chain.content_digest(**forged))
        await conn.execute(
            _FORGE[conn.dialect.name],
            {**_stored(conn.dialect.name, forged), "position": forged_position, "txid": txid,
             "prev_hash": prev_hash, "hash": digest},
        )  # fmt: skip

    report = await log.verify()

    # Its position (below the head's) also breaks the aggregate's order: both are reported.
    assert ("inserted", forged_position) in [(p.kind, p.position) for p in report.problems]
    assert {p.position for p in report.problems} == {forged_position}


async def test_an_edited_seal_is_caught(log: Log) -> None:
    await log.seal()
    async with log.db.read() as conn:
        seq = (await conn.execute(text("SELECT max(seq) FROM event_seals"))).scalar_one()
    await log.tamper("UPDATE event_seals SET events = events + 1 WHERE seq = :s", s=seq)
    try:
        problems = (await log.verify()).problems
    finally:
        await log.tamper("UPDATE event_seals SET events = events - 1 WHERE seq = :s", s=seq)

    assert [(p.kind, p.detail) for p in problems] == [
        ("seal", f"seal {seq} was edited or does not follow seal {seq - 1}")
    ]


def _stored_uuid(log: Log) -> Any:
    return log.tenant_id.hex if log.db.engine.dialect.name == "sqlite" else log.tenant_id


_COLUMNS = (
    "position, txid, event_id, tenant_id, aggregate_type, aggregate_id, version, event_type,"
    " schema_version, data, metadata, recorded_at, prev_hash, hash"
)
_VALUES = (
    ":position, :txid, :event_id, :tenant_id, :aggregate_type, :aggregate_id, :version,"
    " :event_type, :schema_version, {data}, {metadata}, :recorded_at, :prev_hash, :hash"
)
_FORGE = {
    # PostgreSQL's trigger recomputes the chain on insert, as it would for the attacker.
    "postgresql": text(
        f"INSERT INTO events ({_COLUMNS}) VALUES ("
        + _VALUES.format(data="CAST(:data AS jsonb)", metadata="CAST(:metadata AS jsonb)")
        + ")"
    ),
    "sqlite": text(
        f"INSERT INTO events ({_COLUMNS}) VALUES ("
        + _VALUES.format(data=":data", metadata=":metadata")
        + ")"
    ),
}


def _stored(dialect: str, event: dict[str, Any]) -> dict[str, Any]:
    stored = {**event, "data": json.dumps(event["data"]), "metadata": json.dumps(event["metadata"])}
    if dialect == "sqlite":
        stored["event_id"] = event["event_id"].hex
        stored["tenant_id"] = event["tenant_id"].hex
        moment = event["recorded_at"].astimezone(UTC)
        stored["recorded_at"] = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return stored
