"""`priority` on trigger: when work waits for a worker, a run with a higher priority starts
first (the order is read from the event log's positions, not from timings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    run_events,
    running,
    trigger_run,
)
from tests.integration.held_steps import BLOCKER, JOB, holder
from workflow_engine.auth.permissions import Role

WORKFLOWS = [BLOCKER, JOB]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    # One worker slot, taken by the blocker: the jobs queue up behind it.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="1")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def test_a_higher_priority_starts_first(api: tuple[httpx.AsyncClient, Any]) -> None:
    client, headers = api
    key = f"k{id(api)}"
    started, released = holder(key)
    await trigger_run(client, headers, "blocker", {"key": key})
    async with asyncio.timeout(15):
        await started.wait()  # the worker's one slot is taken

    runs: dict[str, list[str]] = {"normal": [], "urgent": [], "background": []}
    for n in range(4):
        runs["normal"].append((await trigger_run(client, headers, "job", {"n": n}))["workflow_id"])
    urgent = await trigger_run(client, headers, "job", {"n": 9}, priority=10)
    background = await trigger_run(client, headers, "job", {"n": -1}, priority=-5)
    runs["urgent"].append(urgent["workflow_id"])
    runs["background"].append(background["workflow_id"])
    released.set()

    started: dict[str, int] = {}
    for run_ids in runs.values():
        for run_id in run_ids:
            assert (await finished_run(client, headers, run_id))["status"] == "completed"
            [first] = [e["position"] for e in await run_events(client, headers, run_id)
                       if e["event_type"] == "StepStarted"]  # fmt: skip
            started[run_id] = first
    order = sorted(started, key=started.__getitem__)
    assert order[0] == urgent["workflow_id"]
    assert order[-1] == background["workflow_id"]
    assert order[1:-1] == runs["normal"]  # equal priority: oldest first

    keyed = {**headers, "Idempotency-Key": f"prio-{key}"}
    request = {"workflow_name": "job", "data": {"n": 1}}
    replay = await client.post("/api/v1/workflows/trigger", headers=keyed, json=request)
    assert replay.status_code == 202
    other = await client.post("/api/v1/workflows/trigger", headers=keyed,
                              json={**request, "priority": 5})  # fmt: skip
    assert other.status_code == 422  # the same key with another priority is another request
    refused = await client.post("/api/v1/workflows/trigger", headers=headers,
                                json={"workflow_name": "job", "priority": 101})  # fmt: skip
    assert refused.status_code == 422
