"""`sleep`: a durable timer that holds no worker, on SQLite and PostgreSQL, through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
from workflow_engine.auth.permissions import Role
from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import InvalidDefinition
from workflow_engine.nodes.registry import registry as nodes

WORKFLOWS = [
    {"name": "nap", "steps": [
        {"id": "nap", "uses": "sleep", "with": {"seconds": "{{ input.seconds }}"}},
        {"id": "after", "uses": "transform", "needs": ["nap"],
         "with": {"woke": "{{ steps.nap.output.until }}"}},
    ], "output": "{{ steps.after.output }}"},
    {"name": "alarm", "steps": [
        {"id": "ring", "uses": "sleep", "with": {"until": "{{ input.at }}"}},
    ], "output": "{{ steps.ring.output }}"},
    {"name": "quick", "steps": [{"id": "only", "uses": "transform", "with": {"ok": True}}],
     "output": "{{ steps.only.output }}"},
]  # fmt: skip


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    # Two worker slots: a sleeping run that held one would be seen at once.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="2")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, app, {"Authorization": f"Bearer {token}"}


async def _status(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    return (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()


async def _until_waiting(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    async with asyncio.timeout(15):
        while True:
            status = await _status(client, headers, run_id)
            if status["status"] == "waiting":
                return status
            await asyncio.sleep(0.05)


async def test_a_sleep_waits_without_a_worker_and_completes_on_time(
    api: tuple[httpx.AsyncClient, Any, dict[str, str]],
) -> None:
    client, _app, headers = api
    before = datetime.now(UTC)
    run = await trigger_run(client, headers, "nap", {"seconds": 1})
    waiting = await _until_waiting(client, headers, run["workflow_id"])
    nap = steps_of(waiting)["nap"]
    assert (nap["status"], steps_of(waiting)["after"]["status"]) == ("waiting", "pending")
    wakes = datetime.fromisoformat(nap["next_attempt_at"])
    assert before + timedelta(seconds=1) <= wakes <= datetime.now(UTC) + timedelta(seconds=1)

    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    assert datetime.fromisoformat(steps_of(done)["nap"]["finished_at"]) >= wakes
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    assert datetime.fromisoformat(results["output"]["woke"]) == wakes

    kinds = [e["event_type"] for e in await run_events(client, headers, run["workflow_id"])
             if e["data"].get("step_id") == "nap"]  # fmt: skip
    assert kinds == ["StepStarted", "StepWaiting", "StepCompleted"]
    logs = (await client.get(run["links"]["logs"], headers=headers)).json()["items"]
    assert any(entry["message"].startswith("step nap waiting until") for entry in logs)


async def test_sleeping_runs_hold_no_worker_and_cancel_at_once(
    api: tuple[httpx.AsyncClient, Any, dict[str, str]],
) -> None:
    client, app, headers = api
    sleepers = [
        (await trigger_run(client, headers, "nap", {"seconds": 600}))["workflow_id"]
        for _ in range(6)  # three times the worker's two slots
    ]
    for run_id in sleepers:
        await _until_waiting(client, headers, run_id)
    quick = await trigger_run(client, headers, "quick")
    assert (await finished_run(client, headers, quick["workflow_id"]))["status"] == "completed"
    db = app.state.context.service("database", DatabaseService).database
    async with db.read() as conn:
        leased = (await conn.execute(text(
            "SELECT count(*) FROM tasks WHERE lease_owner IS NOT NULL"
        ))).scalar_one()  # fmt: skip
    assert leased == 0

    cancelled = await client.post(f"/api/v1/workflows/{sleepers[0]}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"  # no worker to wait for
    status = await _status(client, headers, sleepers[0])
    assert {s["id"]: s["status"] for s in status["steps"]} == {
        "nap": "cancelled",
        "after": "cancelled",
    }
    async with db.read() as conn:
        left = (await conn.execute(
            text("SELECT count(*) FROM tasks WHERE run_id = :run"), {"run": _db_id(db, sleepers[0])}
        )).scalar_one()  # fmt: skip
    assert left == 0


async def test_until_takes_an_aware_time_and_a_past_one_fires_at_once(
    api: tuple[httpx.AsyncClient, Any, dict[str, str]],
) -> None:
    client, _app, headers = api
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    run = await trigger_run(client, headers, "alarm", {"at": past})
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    assert datetime.fromisoformat(done["steps"][0]["finished_at"]) < datetime.fromisoformat(
        past
    ) + timedelta(hours=1, seconds=30)

    naive = await trigger_run(client, headers, "alarm", {"at": "2030-01-01T09:00:00"})
    failed = await finished_run(client, headers, naive["workflow_id"])
    step = steps_of(failed)["ring"]
    assert (failed["status"], step["status"], step["attempts"]) == ("failed", "failed", 1)
    assert step["error"]["class"] == "bad_arguments"
    assert "time zone" in step["error"]["message"]


def test_a_sleep_names_one_wake_time_when_defined() -> None:
    catalog = DefinitionCatalog(nodes)
    for arguments, expected in (
        ({"seconds": 1, "until": "2030-01-01T00:00:00Z"}, "exactly one of"),
        ({"minutes": 5}, "not 'minutes'"),
        ({"seconds": -1}, "between 0 and"),
        ({"seconds": "soon"}, "must be a number"),
        ({"until": "tomorrow"}, "ISO 8601"),
    ):
        with pytest.raises(InvalidDefinition) as raised:
            catalog.register({"name": "bad_sleep", "steps": [
                {"id": "nap", "uses": "sleep", "with": arguments}]})  # fmt: skip
        assert expected in str(raised.value), (arguments, str(raised.value))


def _db_id(db: Any, run_id: str) -> str:
    """A run id as the tasks table stores it (32 hex digits on SQLite)."""
    return run_id.replace("-", "") if db.is_sqlite else run_id


async def test_a_task_claimed_too_often_without_an_outcome_fails_its_step(
    database_url: str, tmp_path: Path
) -> None:
    """A step whose task keeps coming back without an outcome (its workers died holding it)
    fails as `internal` once claimed more than WORKER_MAX_CLAIMS times, instead of looping."""
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_MAX_CLAIMS="3")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        headers = {"Authorization": f"Bearer {token}"}
        run = await trigger_run(client, headers, "nap", {"seconds": 600})
        await _until_waiting(client, headers, run["workflow_id"])
        db = app.state.context.service("database", DatabaseService).database
        async with db.transaction() as conn:  # as if three workers had died holding it
            await conn.execute(
                text("UPDATE tasks SET claims = 3, available_at = :now WHERE run_id = :run"),
                {"run": _db_id(db, run["workflow_id"]), "now": _stored_time(db)},
            )
        done = await finished_run(client, headers, run["workflow_id"])
    nap = steps_of(done)["nap"]
    assert (done["status"], nap["status"], nap["error"]["class"]) == (
        "failed",
        "failed",
        "internal",
    )
    assert "claimed 3 times without an outcome" in nap["error"]["message"]


def _stored_time(db: Any) -> Any:
    """Now, as the tasks table stores times (naive UTC text on SQLite)."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    return now.replace(tzinfo=None).isoformat(sep=" ") if db.is_sqlite else now
