"""The hot reads — a run's status, the run list, a run's log, an aggregate's events — answer
with exactly the documents the response models describe, on both databases: every member in
the models' order, times as `...T03:04:05.123400Z` (no fraction when it is zero), durations
as floats (`1500.0`), JSON columns as JSON. Each is one statement; on PostgreSQL it runs
under the tenant's row-level security.

The rows are written directly, with chosen times, so each format is pinned to a value. Stored
JSON documents are written with their keys in JSONB's order (shorter keys first), which both
databases then keep (pitfall 7 in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.integration.conftest import Accounts
from workflow_engine.auth.permissions import Role
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade
from workflow_engine.db.read_statements import RUN_LOG_PAGE, RUN_STATUS
from workflow_engine.db.tables import run_logs, step_runs, workflow_runs
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.runs import RunService
from workflow_engine.events import EventStore, NewEvent
from workflow_engine.nodes import registry

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MICRO = timedelta(microseconds=1)
USAGE = {"provider": "openai", "model": "gpt-test", "calls": 2, "latency_ms": 12.25,
         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}  # fmt: skip


def strictly(document: Any) -> str:
    """Equal documents with members in the same order and numbers of the same type (1.0 is
    not 1): what a client parsing the body would tell apart."""
    return json.dumps(document)


async def reader(accounts: Accounts) -> tuple[dict[str, str], uuid.UUID]:
    login = await accounts.login(await accounts.user(Role.viewer))
    return {"Authorization": f"Bearer {login['token']}"}, uuid.UUID(login["user"]["tenant_id"])


class Rows:
    """Read-model rows a test writes directly, deleted when it ends: no event accounts for
    them, so a replay of the read models by another test on the shared PostgreSQL database
    would find them gone."""

    def __init__(self) -> None:
        self.written: list[tuple[Database, uuid.UUID]] = []

    async def run(
        self,
        db: Database,
        tenant_id: uuid.UUID,
        *,
        created_at: datetime = T0,
        status: str = "running",
        name: str = "reads",
        steps: Sequence[dict[str, Any]] = (),
        **columns: Any,
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        row = {
            "id": run_id, "tenant_id": tenant_id, "workflow_name": name, "workflow_version": 3,
            "status": status, "input": {}, "output": None, "error": None, "definition": {},
            "steps_total": len(steps), "steps_done": 0, "correlation_id": None,
            "created_at": created_at, "started_at": None, "finished_at": None,
            "updated_at": created_at, "version": 1, **columns,
        }  # fmt: skip
        step_defaults = {"attempts": 0, "output": None, "error": None, "next_attempt_at": None,
                         "started_at": None, "finished_at": None, "status": "pending"}  # fmt: skip
        self.written.append((db, run_id))
        async with db.transaction() as conn:
            await conn.execute(workflow_runs.insert().values(row))
            for position, step in enumerate(steps):
                values = {**step_defaults, **step, "run_id": run_id, "tenant_id": tenant_id,
                          "position": position}  # fmt: skip
                await conn.execute(step_runs.insert().values(values))
        return run_id

    async def logs(
        self, db: Database, run_id: uuid.UUID, tenant_id: uuid.UUID, entries: list[tuple[Any, ...]]
    ) -> None:
        """Entries as (position, index, step, attempt, level, message, fields, time)."""
        async with db.transaction() as conn:
            await conn.execute(run_logs.insert(), [
                {"run_id": run_id, "position": position, "entry": entry, "tenant_id": tenant_id,
                 "step_id": step, "attempt": attempt, "level": level, "message": message,
                 "fields": fields, "logged_at": at}
                for position, entry, step, attempt, level, message, fields, at in entries
            ])  # fmt: skip

    async def remove(self) -> None:
        for db, run_id in self.written:
            async with db.transaction() as conn:
                for table in (run_logs, step_runs):
                    await conn.execute(table.delete().where(table.c.run_id == run_id))
                await conn.execute(workflow_runs.delete().where(workflow_runs.c.id == run_id))


@pytest.fixture
async def rows() -> AsyncIterator[Rows]:
    written = Rows()
    yield written
    await written.remove()


async def test_a_status_answers_every_member_in_the_models_format(
    accounts: Accounts, rows: Rows
) -> None:
    headers, tenant = await reader(accounts)
    steps = [
        {"step_id": "ask", "uses": "llm.chat", "status": "completed", "attempts": 1,
         "output": USAGE, "started_at": T0 + SECOND / 2, "finished_at": T0 + 2 * SECOND},
        {"step_id": "again", "uses": "llm.chat", "status": "completed", "attempts": 1,
         "output": {**USAGE, "calls": 1, "latency_ms": 0.5}, "started_at": T0 + SECOND,
         "finished_at": T0 + SECOND + 999 * MICRO},
        # Only completed LLM steps count toward the usage.
        {"step_id": "failed_ask", "uses": "llm.chat", "status": "failed", "attempts": 2,
         "output": USAGE, "error": {"count": 2, "ratio": 0.5, "message": "déjà vu ✓"},
         "started_at": T0 + 3 * SECOND, "finished_at": T0 + 2.5 * SECOND,
         "next_attempt_at": T0 + 4 * SECOND + 120_000 * MICRO},
        {"step_id": "later", "uses": "transform"},
    ]  # fmt: skip
    run_id = await rows.run(
        accounts.db, tenant, steps=steps, steps_done=2, started_at=T0 + 123_400 * MICRO,
        error={"step": "failed_ask", "message": "a step failed"},
    )  # fmt: skip

    response = await accounts.client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    base = f"/api/v1/workflows/{run_id}"
    assert strictly(response.json()) == strictly({
        "workflow_id": str(run_id), "workflow_name": "reads", "version": 3, "status": "running",
        "created_at": "2026-01-02T03:04:05Z", "started_at": "2026-01-02T03:04:05.123400Z",
        "finished_at": None, "progress": {"completed": 2, "total": 4},
        "steps": [
            {"id": "ask", "uses": "llm.chat", "status": "completed", "attempts": 1,
             "started_at": "2026-01-02T03:04:05.500000Z",
             "finished_at": "2026-01-02T03:04:07Z", "duration_ms": 1500.0,
             "next_attempt_at": None, "error": None},
            {"id": "again", "uses": "llm.chat", "status": "completed", "attempts": 1,
             "started_at": "2026-01-02T03:04:06Z", "finished_at": "2026-01-02T03:04:06.000999Z",
             "duration_ms": 0.999, "next_attempt_at": None, "error": None},
            {"id": "failed_ask", "uses": "llm.chat", "status": "failed", "attempts": 2,
             "started_at": "2026-01-02T03:04:08Z", "finished_at": "2026-01-02T03:04:07.500000Z",
             "duration_ms": -500.0, "next_attempt_at": "2026-01-02T03:04:09.120000Z",
             "error": {"count": 2, "ratio": 0.5, "message": "déjà vu ✓"}},
            {"id": "later", "uses": "transform", "status": "pending", "attempts": 0,
             "started_at": None, "finished_at": None, "duration_ms": None,
             "next_attempt_at": None, "error": None},
        ],
        "error": {"step": "failed_ask", "message": "a step failed"},
        "parent": None, "children": [], "replay_of": None, "replays": [],
        "llm_usage": {
            "calls": 3, "prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
            "by_model": [{"provider": "openai", "model": "gpt-test", "calls": 3,
                          "prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
                          "latency_ms": 12.75}],
        },
        "links": {"status": f"{base}/status", "results": f"{base}/results",
                  "logs": f"{base}/logs", "cancel": f"{base}/cancel", "retry": f"{base}/retry",
                  "events": f"/api/v1/events/{run_id}"},
    })  # fmt: skip


async def test_a_run_without_steps_or_llm_steps_reads_empty(accounts: Accounts, rows: Rows) -> None:
    headers, tenant = await reader(accounts)
    run_id = await rows.run(accounts.db, tenant, status="queued")
    body = (await accounts.client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()
    assert body["steps"] == []
    assert strictly(body["llm_usage"]) == strictly({
        "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "by_model": []
    })  # fmt: skip


async def test_a_moment_in_the_run_list_is_a_date_time_never_unix_time(
    accounts: Accounts,
) -> None:
    headers, _ = await reader(accounts)
    for query in ({"since": "0"}, {"until": "1700000000"}, {"since": "0001-01-01T00:00:00+01:00"}):
        answer = await accounts.client.get("/api/v1/workflows", headers=headers, params=query)
        assert answer.status_code == 422, (query, answer.text)
        [error] = answer.json()["errors"]
        assert error["loc"] == ["query", *query], error
    since = {"since": "2026-01-31T08:00:00+01:00"}
    listed = await accounts.client.get("/api/v1/workflows", headers=headers, params=since)
    assert listed.status_code == 200, listed.text


async def test_another_tenants_run_is_not_found_by_any_read(accounts: Accounts, rows: Rows) -> None:
    headers, _ = await reader(accounts)
    _, other = await reader(accounts)
    theirs = await rows.run(accounts.db, other)
    client = accounts.client
    for path in (f"/api/v1/workflows/{theirs}/status", f"/api/v1/workflows/{theirs}/logs",
                 f"/api/v1/workflows/{uuid.uuid4()}/status"):  # fmt: skip
        response = await client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    listed = (await client.get("/api/v1/workflows", headers=headers)).json()
    assert listed == {"items": [], "next_cursor": None}


async def test_the_run_list_pages_newest_first_in_the_models_format(
    accounts: Accounts, rows: Rows
) -> None:
    headers, tenant = await reader(accounts)
    db = accounts.db
    first = await rows.run(db, tenant, created_at=T0, status="completed",
                          finished_at=T0 + SECOND, steps_done=0)  # fmt: skip
    # Two runs created at the same moment are ordered by id.
    twins = sorted([await rows.run(db, tenant, created_at=T0 + 250_000 * MICRO, name="other")
                    for _ in range(2)], reverse=True)  # fmt: skip
    client = accounts.client

    page = (await client.get("/api/v1/workflows", headers=headers, params={"limit": 2})).json()
    assert strictly(page["items"]) == strictly([
        {"workflow_id": str(run_id), "workflow_name": "other", "version": 3,
         "status": "running", "created_at": "2026-01-02T03:04:05.250000Z",
         "finished_at": None, "progress": {"completed": 0, "total": 0}}
        for run_id in twins
    ])  # fmt: skip
    cursor = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "=="))
    assert cursor == {"created_at": "2026-01-02T03:04:05.250000+00:00", "id": str(twins[1])}
    after_page = {"limit": 2, "cursor": page["next_cursor"]}
    rest = (await client.get("/api/v1/workflows", headers=headers, params=after_page)).json()
    assert strictly(rest) == strictly({
        "items": [{"workflow_id": str(first), "workflow_name": "reads", "version": 3,
                   "status": "completed", "created_at": "2026-01-02T03:04:05Z",
                   "finished_at": "2026-01-02T03:04:06Z",
                   "progress": {"completed": 0, "total": 0}}],
        "next_cursor": None,
    })  # fmt: skip

    async def ids(**params: Any) -> list[str]:
        listed = await client.get("/api/v1/workflows", headers=headers, params=params)
        assert listed.status_code == 200, listed.text
        return [item["workflow_id"] for item in listed.json()["items"]]

    assert await ids(status="completed") == [str(first)]
    assert await ids(workflow_name="other") == [str(run_id) for run_id in twins]
    assert await ids(since="2026-01-02T03:04:05.1Z") == [str(run_id) for run_id in twins]
    assert await ids(until="2026-01-02T04:04:05.25+01:00") == [str(first)]
    # A page that is exactly full has no next page.
    assert (await client.get("/api/v1/workflows", headers=headers,
                             params={"limit": 3})).json()["next_cursor"] is None  # fmt: skip


async def test_a_log_page_reads_entries_in_order_in_the_models_format(
    accounts: Accounts, rows: Rows
) -> None:
    headers, tenant = await reader(accounts)
    run_id = await rows.run(accounts.db, tenant)
    entries = [
        (7, 0, None, None, "info", "run queued", {}, T0),
        (7, 1, "ask", 1, "warning", "naïve — “quoted”", {"n": 1.0, "nested": {"ok": True}},
         T0 + 5 * MICRO),
        (9, 0, "ask", 2, "error", "failed", {"error": {"message": None}}, T0 + SECOND),
    ]  # fmt: skip
    await rows.logs(accounts.db, run_id, tenant, entries)
    logs = f"/api/v1/workflows/{run_id}/logs"
    client = accounts.client

    page = (await client.get(logs, headers=headers, params={"limit": 2})).json()
    assert strictly(page) == strictly({
        "items": [
            {"id": "7.0", "time": "2026-01-02T03:04:05Z", "level": "info", "step": None,
             "attempt": None, "message": "run queued", "fields": {}},
            {"id": "7.1", "time": "2026-01-02T03:04:05.000005Z", "level": "warning",
             "step": "ask", "attempt": 1, "message": "naïve — “quoted”",
             "fields": {"n": 1.0, "nested": {"ok": True}}},
        ],
        "next_cursor": "7.1",
    })  # fmt: skip
    rest = (await client.get(logs, headers=headers, params={"after": "7.1"})).json()
    assert [(e["id"], e["time"], e["fields"]) for e in rest["items"]] == [
        ("9.0", "2026-01-02T03:04:06Z", {"error": {"message": None}})
    ]
    assert rest["next_cursor"] is None
    # A full page names its last entry even when nothing follows it.
    last = (await client.get(logs, headers=headers, params={"after": "7.1", "limit": 1})).json()
    assert last["next_cursor"] == "9.0"
    beyond = (await client.get(logs, headers=headers, params={"after": "9.0"})).json()
    assert beyond == {"items": [], "next_cursor": None}


async def test_an_aggregates_events_page_in_the_models_format(accounts: Accounts) -> None:
    login = await accounts.login(await accounts.user(Role.operator))
    headers = {"Authorization": f"Bearer {login['token']}"}
    client = accounts.client
    appended = []
    for n in range(3):
        response = await client.post("/events", headers=headers, json={
            "aggregate_type": "order", "aggregate_id": "order-7", "event_type": "ItemAdded",
            "data": {"n": n, "price": 2.5, "label": "crème"}, "metadata": {"channel": "web"},
        })  # fmt: skip
        assert response.status_code == 201, response.text
        appended.append(response.json())

    page = (await client.get("/api/v1/events/order-7", headers=headers,
                             params={"limit": 2})).json()  # fmt: skip
    first = page["items"][0]
    assert list(first) == [
        "event_id",
        "position",
        "aggregate_type",
        "aggregate_id",
        "version",
        "event_type",
        "schema_version",
        "data",
        "metadata",
        "recorded_at",
    ]
    assert (first["event_id"], first["position"], first["recorded_at"]) == (
        appended[0]["event_id"], appended[0]["position"],
        appended[0]["recorded_at"],  # the append's answer comes from the models
    )  # fmt: skip
    assert first["data"] == {"n": 0, "price": 2.5, "label": "crème"}
    assert first["metadata"]["channel"] == "web"
    assert [e["version"] for e in page["items"]] == [1, 2]
    after_page = {"limit": 2, "cursor": page["next_cursor"]}
    rest = (await client.get("/api/v1/events/order-7", headers=headers, params=after_page)).json()
    assert [e["version"] for e in rest["items"]] == [3]
    assert rest["next_cursor"] is None
    # Past its last event an aggregate's page is empty; an unknown aggregate is a 404.
    later = await client.get("/api/v1/events/order-7?from_version=4", headers=headers)
    assert later.json() == {"items": [], "next_cursor": None}
    unknown = await client.get("/api/v1/events/order-8", headers=headers)
    assert unknown.status_code == 404
    other, _ = await reader(accounts)
    assert (await client.get("/api/v1/events/order-7", headers=other)).status_code == 404


async def test_each_hot_read_is_one_statement_on_postgresql(
    postgres_database: Database, tenant_id: uuid.UUID, rows: Rows
) -> None:
    """Between taking a connection from the pool and giving it back, a read sends one
    statement: no BEGIN, no role or tenant set apart, no COMMIT."""
    db = postgres_database
    assert await db.detect_row_level_security()
    run_id = await rows.run(db, tenant_id, steps=[{"step_id": "a", "uses": "transform"}])
    await EventStore(db).append(
        tenant_id=tenant_id, aggregate_type="order", aggregate_id="o-1",
        new_events=[NewEvent("ItemAdded", {"n": 1})], expected_version=0,
    )  # fmt: skip
    windows: list[list[str]] = []

    @event.listens_for(db.engine.sync_engine, "connect")
    def log_statements(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda query: windows[-1].append(query.query)
        )

    @event.listens_for(db.engine.sync_engine, "checkout")
    def taken(*_: Any) -> None:
        windows.append([])

    await db.dispose()  # connections made from here on log what they send
    runs = RunService(db, DefinitionCatalog(registry))
    reads = [
        runs.status(tenant_id, run_id),
        runs.run_page(tenant_id, limit=10),
        runs.log_page(tenant_id, run_id, after=None, limit=10),
        EventStore(db).aggregate_page(tenant_id, "o-1", from_version=1, limit=10),
    ]
    for read in reads:
        assert await read is not None
        await asyncio.sleep(0)  # asyncpg tells its query loggers on the next turn of the loop
    assert [len(window) for window in windows] == [1, 1, 1, 1], windows
    assert all("FROM workflow_engine_read_" in window[0] for window in windows)


async def test_a_read_function_confines_itself_to_the_tenant(
    postgres_database: Database, tenant_id: uuid.UUID, rows: Rows
) -> None:
    """It runs its query as the role the policies bind, with the tenant set for the call
    only: what follows in the same transaction sees no tenant's rows."""
    db = postgres_database
    assert await db.detect_row_level_security()
    run_id = await rows.run(db, tenant_id)
    async with db.read() as conn:
        found = await conn.execute(
            text("SELECT document FROM workflow_engine_read_run(:tenant, true, :run)"),
            {"tenant": tenant_id, "run": run_id},
        )
        assert json.loads(found.scalar_one())["workflow_id"] == str(run_id)
        after = await conn.execute(
            text("SELECT current_user, current_setting('app.tenant_id', true),"
                 " (SELECT count(*) FROM workflow_runs)")
        )  # fmt: skip
        assert tuple(after.one()) == ("workflow_engine_api", "", 0)


def test_each_read_of_one_run_finds_it_by_its_key_on_sqlite(tmp_path: Path) -> None:
    """SQLite's planner without statistics would rather search a one-column tenant index than
    the run's key, and then read every row of the tenant: no read of one run may do that."""
    upgrade(to_async_url(f"sqlite:///{tmp_path / 'plans.db'}"))
    connection = sqlite3.connect(tmp_path / "plans.db")
    try:
        for statement in (RUN_STATUS, RUN_LOG_PAGE):
            values = dict.fromkeys(statement.params) | {"limit": 10}
            plan = [row[3] for row in connection.execute(
                f"EXPLAIN QUERY PLAN {statement.sqlite}", values)]  # fmt: skip
            searches = [step for step in plan if step.startswith("SEARCH")]
            assert searches, plan
            # the run, its steps, its children, its replays
            keyed = ("(id=?)", "(run_id=?)", "(parent_run_id=?)", "(replay_of_run_id=?)")
            assert all(any(key in step for key in keyed) for step in searches), plan
    finally:
        connection.close()
