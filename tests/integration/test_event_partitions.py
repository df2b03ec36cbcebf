"""`EVENT_PARTITIONS` on PostgreSQL: the log hash-partitioned by tenant behaves as one table."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.config.database_url import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade
from workflow_engine.errors import ConcurrencyConflict
from workflow_engine.events import EventStore, NewEvent


async def _migrate(url: str, partitions: int) -> None:
    await asyncio.to_thread(upgrade, to_async_url(url), event_partitions=partitions)


async def _layout(db: Database) -> tuple[str, list[str]]:
    async with db.read() as conn:
        kind = (
            await conn.execute(
                text("SELECT relkind::text FROM pg_class WHERE oid = 'events'::regclass")
            )
        ).scalar_one()
        partitions = (
            await conn.execute(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'events'::regclass ORDER BY 1"
                )
            )
        ).scalars()
        return str(kind), list(partitions)


async def _access(db: Database) -> dict[str, Any]:
    async with db.read() as conn:
        grants = await conn.execute(
            text(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_name = 'events' AND grantee <> current_user ORDER BY 1, 2"
            )
        )
        by_role: dict[str, list[str]] = {}
        for grantee, privilege in grants:
            by_role.setdefault(grantee, []).append(privilege)
        switches = (
            await conn.execute(
                text(
                    "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE oid = 'events'::regclass"
                )
            )
        ).one()
        policies = await conn.execute(
            text(
                "SELECT policyname, cmd, roles::text[], qual, with_check FROM pg_policies "
                "WHERE tablename = 'events'"
            )
        )
        return {"grants": by_role, "rls": tuple(switches), "policies": [tuple(p) for p in policies]}


async def _keys(db: Database) -> dict[str, str]:
    async with db.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u')"
            )
        )
        return {str(name): str(definition) for name, definition in rows.all()}


async def _all_rows(db: Database) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        rows = await conn.execute(text("SELECT * FROM events ORDER BY position"))
        return [tuple(row) for row in rows]


async def _append(store: EventStore, tenant: uuid.UUID, aggregate: str, n: int) -> None:
    await store.append(
        tenant_id=tenant, aggregate_type="order", aggregate_id=aggregate,
        new_events=[NewEvent("OrderChanged", {"n": i}) for i in range(n)], expected_version=None,
    )  # fmt: skip


async def test_four_partitions_hold_the_log_and_serve_the_api(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    await _migrate(fresh_postgres_url, 4)
    app = build_app(fresh_postgres_url, tmp_path, EVENT_PARTITIONS="4")
    db = Database(to_async_url(fresh_postgres_url))
    try:
        kind, partitions = await _layout(db)
        assert kind == "p"
        assert partitions == [f"events_p{i}_of_4" for i in range(4)]

        async with running(app) as client:
            accounts = Accounts(app, client)
            tenants = []
            for _ in range(8):
                token = await accounts.token(Role.operator)
                headers = {"Authorization": f"Bearer {token}"}
                tenants.append(headers)
                for version in (0, 1):
                    appended = await client.post("/events", headers=headers, json={
                        "aggregate_type": "order", "aggregate_id": "o-1",
                        "event_type": "OrderChanged", "data": {"v": version},
                        "expected_version": version,
                    })  # fmt: skip
                    assert appended.status_code == 201, appended.text
                stale = await client.post("/events", headers=headers, json={
                    "aggregate_type": "order", "aggregate_id": "o-1",
                    "event_type": "OrderChanged", "data": {}, "expected_version": 0,
                })  # fmt: skip
                assert stale.status_code == 409
            # Every tenant has an `o-1` of its own: reads stay within the caller's tenant.
            for headers in tenants:
                read = await client.get("/api/v1/events/o-1", headers=headers)
                assert [e["data"] for e in read.json()["items"]] == [{"v": 0}, {"v": 1}]

        async with db.read() as conn:
            used = (
                await conn.execute(text("SELECT count(DISTINCT tableoid) FROM events"))
            ).scalar_one()
        assert used > 1  # eight tenants did not all hash to one partition

        store = EventStore(db)
        followed = await store.read_log(after=0, limit=10_000)
        assert [e.position for e in followed] == sorted(e.position for e in followed)
        assert len(followed) == len(await _all_rows(db))
    finally:
        await db.dispose()


async def test_the_tenant_role_is_confined_and_cannot_rewrite_the_partitioned_log(
    fresh_postgres_url: str,
) -> None:
    await _migrate(fresh_postgres_url, 4)
    db = Database(to_async_url(fresh_postgres_url))
    try:
        assert await db.detect_row_level_security()
        store = EventStore(db)
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        await _append(store, mine, "o-1", 2)
        await _append(store, theirs, "o-1", 3)
        async with db.tenant_read(mine) as conn:
            unfiltered = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
        assert unfiltered == 2
        with pytest.raises(Exception, match="permission denied"):
            async with db.tenant_transaction(mine) as conn:
                await conn.execute(text("DELETE FROM events"))
        with pytest.raises(ConcurrencyConflict):
            await store.append(
                tenant_id=mine, aggregate_type="order", aggregate_id="o-1",
                new_events=[NewEvent("OrderChanged", {})], expected_version=1,
            )  # fmt: skip
    finally:
        await db.dispose()


async def test_migrate_converts_between_layouts_keeping_every_event(
    fresh_postgres_url: str,
) -> None:
    await _migrate(fresh_postgres_url, 1)
    db = Database(to_async_url(fresh_postgres_url))
    reader = f"we_reporting_{uuid.uuid4().hex[:8]}"  # an operator's own role and grant
    async with db.transaction() as conn:
        await conn.execute(text(f"CREATE ROLE {reader} NOLOGIN"))
        await conn.execute(text(f"GRANT SELECT ON events TO {reader}"))
    try:
        assert await _layout(db) == ("r", [])
        access_before = await _access(db)
        assert access_before["grants"][reader] == ["SELECT"]
        assert access_before["grants"]["workflow_engine_api"] == ["INSERT", "SELECT"]
        store = EventStore(db)
        tenants = [uuid.uuid4() for _ in range(5)]
        for index, tenant in enumerate(tenants):
            await _append(store, tenant, f"o-{index}", 3)
        before = await _all_rows(db)

        await _migrate(fresh_postgres_url, 4)
        await db.dispose()  # cached statements named the old table
        assert (await _layout(db))[0] == "p"
        assert await _all_rows(db) == before  # positions, txids and payloads kept
        assert await _access(db) == access_before  # grants, RLS switches, policies
        assert await _keys(db) == {
            "pk_events": 'PRIMARY KEY (tenant_id, "position")',
            "uq_events_tenant_id_event_id": "UNIQUE (tenant_id, event_id)",
            "uq_events_tenant_id_aggregate_id_version": "UNIQUE (tenant_id, aggregate_id, version)",
        }
        await _append(store, tenants[0], "o-0", 1)  # the sequence carries on
        after_append = await _all_rows(db)
        assert after_append[-1][0] > before[-1][0]

        await _migrate(fresh_postgres_url, 4)  # the same layout again: nothing to do
        await _migrate(fresh_postgres_url, 2)
        await db.dispose()
        assert (await _layout(db))[1] == ["events_p0_of_2", "events_p1_of_2"]
        await _migrate(fresh_postgres_url, 1)
        await db.dispose()
        assert await _layout(db) == ("r", [])
        assert await _all_rows(db) == after_append
        assert await _access(db) == access_before
        assert await _keys(db) == {
            "pk_events": 'PRIMARY KEY ("position")',
            "uq_events_event_id": "UNIQUE (event_id)",
            "uq_events_tenant_id_aggregate_id_version": "UNIQUE (tenant_id, aggregate_id, version)",
        }
    finally:
        async with db.transaction() as conn:
            await conn.execute(text(f"REVOKE ALL ON events FROM {reader}"))
            await conn.execute(text(f"DROP ROLE {reader}"))
        await db.dispose()
