"""`wait.event`: a step waits, holding no worker, for an event appended through `POST /events`,
on SQLite and PostgreSQL, through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    run_events,
    running,
    steps_of,
    trigger_run,
)
from tests.integration.held_steps import holder
from workflow_engine.auth.permissions import Role
from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import InvalidDefinition
from workflow_engine.nodes.registry import registry as nodes

REPLY = {"event": "CustomerReplied", "aggregate": "{{ input.ticket }}"}
WORKFLOWS = [
    {"name": "await_reply", "steps": [
        {"id": "first", "uses": "test.hold", "with": {"key": "{{ input.key }}"}},
        {"id": "reply", "uses": "wait.event", "needs": ["first"], "with": REPLY},
        {"id": "after", "uses": "transform", "needs": ["reply"],
         "with": {"said": "{{ steps.reply.output.text }}"}},
    ], "output": "{{ steps.after.output }}"},
    {"name": "two_replies", "steps": [
        {"id": "one", "uses": "wait.event", "with": REPLY},
        {"id": "two", "uses": "wait.event", "with": REPLY},
    ], "output": {"one": "{{ steps.one.output.text }}", "two": "{{ steps.two.output.text }}"}},
    {"name": "impatient", "steps": [
        {"id": "reply", "uses": "wait.event",
         "with": {**REPLY, "timeout": 0.5, "default": {"text": "no answer"}}},
    ], "output": "{{ steps.reply.output }}"},
    {"name": "strict", "steps": [
        {"id": "reply", "uses": "wait.event", "with": {**REPLY, "timeout": 0.5}},
    ]},
]  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any]]:
    # Two worker slots: waiting runs that held one would be seen at once.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="2")
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        token = await accounts.token(Role.operator, tenant)
        yield client, app, {"Authorization": f"Bearer {token}"}


async def _reply(
    client: httpx.AsyncClient, headers: dict[str, str], ticket: str, said: str
) -> None:
    response = await client.post("/events", headers=headers, json={
        "aggregate_type": "ticket", "aggregate_id": ticket, "event_type": "CustomerReplied",
        "data": {"text": said},
    })  # fmt: skip
    assert response.status_code == 201, response.text
    return int(response.json()["position"])


async def _until(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, status: str
) -> Any:
    async with asyncio.timeout(15):
        while True:
            body = (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.05)


async def _output(client: httpx.AsyncClient, headers: dict[str, str], run: dict[str, Any]) -> Any:
    return (await client.get(run["links"]["results"], headers=headers)).json()["output"]


async def _until_armed(app: Any, run: dict[str, Any], count: int) -> None:
    """Until `count` steps of the run wait with their task back in the queue (after their
    first check)."""
    db = _db(app)
    key = {"run": _stored_id(db, run)}
    async with asyncio.timeout(15):
        while True:
            async with db.read() as conn:
                armed = (await conn.execute(text(
                    "SELECT count(*) FROM event_waits WHERE run_id = :run "
                    "AND matched_position IS NULL"
                ), key)).scalar_one()  # fmt: skip
            if armed >= count:
                return
            await asyncio.sleep(0.05)


def _stored_id(db: Any, run: dict[str, Any]) -> str:
    """A run's id as the tables store it (32 hex digits on SQLite)."""
    return str(run["workflow_id"]).replace("-", "") if db.is_sqlite else str(run["workflow_id"])


async def _completions(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str
) -> list[Any]:
    return [(e["data"]["step_id"], e["data"]["output"])
            for e in await run_events(client, headers, run_id)
            if e["event_type"] == "StepCompleted"]  # fmt: skip


async def test_an_event_during_the_wait_wakes_the_step_once(api: Any) -> None:
    client, app, headers = api
    started, released = holder("during")
    run = await trigger_run(client, headers, "await_reply", {"key": "during", "ticket": "t-1"})
    await started.wait()
    released.set()
    waiting = await _until(client, headers, run["workflow_id"], "waiting")
    assert steps_of(waiting)["reply"]["status"] == "waiting"
    await _until_armed(app, run, 1)
    async with _db(app).read() as conn:
        leased = (await conn.execute(text(
            "SELECT count(*) FROM tasks WHERE run_id = :run AND lease_owner IS NOT NULL"
        ), {"run": _stored_id(_db(app), run)})).scalar_one()  # fmt: skip
    assert leased == 0  # nobody holds a slot for it

    await _reply(client, headers, "t-1", "thanks, solved")
    await _reply(client, headers, "t-1", "a second reply goes unanswered")
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    assert await _output(client, headers, run) == {"said": "thanks, solved"}
    assert await _completions(client, headers, run["workflow_id"]) == [
        ("first", {}), ("reply", {"text": "thanks, solved"}), ("after", {"said": "thanks, solved"}),
    ]  # fmt: skip


async def test_an_event_before_the_wait_is_taken_once(api: Any) -> None:
    client, _app, headers = api
    started, released = holder("before")
    run = await trigger_run(client, headers, "await_reply", {"key": "before", "ticket": "t-2"})
    await started.wait()
    await _reply(client, headers, "t-2", "early bird")  # while the step before still runs
    released.set()
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    assert await _output(client, headers, run) == {"said": "early bird"}
    replies = [
        c for c in await _completions(client, headers, run["workflow_id"]) if c[0] == "reply"
    ]
    assert replies == [("reply", {"text": "early bird"})]


async def test_a_runs_steps_take_separate_events_and_earlier_ones_do_not_count(api: Any) -> None:
    client, app, headers = api
    await _reply(client, headers, "t-3", "before the run: not for it")
    run = await trigger_run(client, headers, "two_replies", {"ticket": "t-3"})
    await _until_armed(app, run, 2)
    await _reply(client, headers, "t-3", "first")
    await _reply(client, headers, "t-3", "second")
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    assert sorted((await _output(client, headers, run)).values()) == ["first", "second"]


async def test_the_timeout_takes_the_default_or_fails_the_step(api: Any) -> None:
    client, _app, headers = api
    patient = await trigger_run(client, headers, "impatient", {"ticket": "t-4"})
    strict = await trigger_run(client, headers, "strict", {"ticket": "t-4"})
    done = await finished_run(client, headers, patient["workflow_id"])
    assert done["status"] == "completed"
    assert await _output(client, headers, patient) == {"text": "no answer"}
    failed = await finished_run(client, headers, strict["workflow_id"])
    error = steps_of(failed)["reply"]["error"]
    assert (failed["status"], error["class"]) == ("failed", "timeout")
    assert "no CustomerReplied event for 't-4'" in error["message"]


async def test_other_tenants_events_do_not_match_and_cancel_disarms(api: Any) -> None:
    client, app, headers = api
    run = await trigger_run(client, headers, "two_replies", {"ticket": "t-5"})
    await _until_armed(app, run, 2)
    other = await Accounts(app, client).token(Role.operator)
    await _reply(client, {"Authorization": f"Bearer {other}"}, "t-5", "someone else's ticket")
    await asyncio.sleep(0.3)
    status = (await client.get(run["links"]["status"], headers=headers)).json()
    assert {s["status"] for s in status["steps"]} == {"waiting"}

    cancelled = await client.post(f"/api/v1/workflows/{run['workflow_id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    db = _db(app)
    run_id = {"run": _stored_id(db, run)}
    async with db.read() as conn:
        armed = (await conn.execute(text(
            "SELECT count(*) FROM event_waits WHERE run_id = :run AND matched_position IS NULL"
        ), run_id)).scalar_one()  # fmt: skip
        tasks = (await conn.execute(
            text("SELECT count(*) FROM tasks WHERE run_id = :run"), run_id
        )).scalar_one()  # fmt: skip
    assert (armed, tasks) == (0, 0)


async def test_a_wait_survives_a_restart(database_url: str, tmp_path: Path) -> None:
    """The server stops while the run waits, one event taken and one to come; the server that
    starts next delivers the second to the armed step."""
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        email = await accounts.user(Role.operator, tenant)
        headers = {"Authorization": f"Bearer {(await accounts.login(email))['token']}"}
        run = await trigger_run(client, headers, "two_replies", {"ticket": "t-6"})
        await _until_armed(app, run, 2)
        await _reply(client, headers, "t-6", "first")
    again = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(again) as client:
        token = (await Accounts(again, client).login(email))["token"]
        headers = {"Authorization": f"Bearer {token}"}
        await _reply(client, headers, "t-6", "second")
        await finished_run(client, headers, run["workflow_id"])
        output = await _output(client, headers, run)
    assert sorted(output.values()) == ["first", "second"]


async def test_the_event_a_step_took_before_its_worker_died_is_the_one_delivered(api: Any) -> None:
    client, app, headers = api
    started, released = holder("crash")
    run = await trigger_run(client, headers, "await_reply", {"key": "crash", "ticket": "t-7"})
    await started.wait()
    await _reply(client, headers, "t-7", "older")
    newer = await _reply(client, headers, "t-7", "newer")
    db = _db(app)
    run_id = _stored_id(db, run)
    async with db.transaction() as conn:  # what a check that took `newer` left behind
        await conn.execute(text(
            "INSERT INTO event_waits (run_id, step_id, tenant_id, attempt, aggregate_id, "
            "event_type, matched_position, created_at) SELECT id, 'reply', tenant_id, 1, "
            "'t-7', 'CustomerReplied', :newer, created_at FROM workflow_runs WHERE id = :run"
        ), {"newer": newer, "run": run_id})  # fmt: skip
    released.set()
    await finished_run(client, headers, run["workflow_id"])
    assert await _output(client, headers, run) == {"said": "newer"}


def test_a_wait_names_its_event_when_defined() -> None:
    catalog = DefinitionCatalog(nodes)
    for arguments, expected in (
        ({"event": "Replied"}, "needs `aggregate`"),
        ({**REPLY, "within": 5}, "does not take 'within'"),
        ({**REPLY, "timeout": 0}, "`timeout` must be seconds"),
        ({"event": "not a type!", "aggregate": "t-1"}, "`event` must be an event type"),
    ):
        with pytest.raises(InvalidDefinition) as raised:
            catalog.register({"name": "bad_wait", "steps": [
                {"id": "reply", "uses": "wait.event", "with": arguments}]})  # fmt: skip
        assert expected in str(raised.value), (arguments, str(raised.value))


def _db(app: Any) -> Any:
    return app.state.context.service("database", DatabaseService).database
