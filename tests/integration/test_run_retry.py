"""Retrying a failed or cancelled run: it goes on from the steps that did not complete, on
SQLite and PostgreSQL, through the API."""

from __future__ import annotations

import asyncio
import uuid
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
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.nodes import FatalStepError, NodeContext, node

BROKEN: set[str] = set()  # tokens of runs whose step `c` fails, until the test mends them


@node("retry_test.gate")
async def gate(ctx: NodeContext, *, n: int, token: str = "") -> dict[str, Any]:
    if token in BROKEN:
        raise FatalStepError("the upstream is down")
    return {"n": n + 1, "attempt": ctx.attempt}


def _gate(step: str, need: str, **more: str) -> dict[str, Any]:
    n = f"{{{{ steps.{need}.output.n }}}}"
    return {"id": step, "uses": "retry_test.gate", "needs": [need], "with": {"n": n, **more}}


WORKFLOWS = [
    {"name": "five", "steps": [
        {"id": "a", "uses": "retry_test.gate", "with": {"n": 0}},
        _gate("b", "a"), _gate("c", "b", token="{{ input.token }}"), _gate("d", "c"),
        _gate("e", "d"),
    ], "output": {"n": "{{ steps.e.output.n }}", "c_attempt": "{{ steps.c.output.attempt }}"}},
    {"name": "long_nap", "steps": [
        {"id": "first", "uses": "transform", "with": {"ok": True}},
        {"id": "nap", "uses": "sleep", "needs": ["first"], "with": {"seconds": 600}},
    ]},
]  # fmt: skip


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        accounts = Accounts(app, client)
        operator = {"Authorization": f"Bearer {await accounts.token(Role.operator)}"}
        viewer = {"Authorization": f"Bearer {await accounts.token(Role.viewer)}"}
        yield client, (operator, viewer)


async def _until_status(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, wanted: str
) -> None:
    async with asyncio.timeout(15):
        while True:
            if (await client.get(path, headers=headers)).json()["status"] == wanted:
                return
            await asyncio.sleep(0.05)


async def test_a_run_failed_at_step_3_of_5_goes_on_from_there_and_completes(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, (headers, _viewer) = api
    token = uuid.uuid4().hex
    BROKEN.add(token)
    run = await trigger_run(client, headers, "five", {"token": token})
    run_id = run["workflow_id"]
    failed = await finished_run(client, headers, run_id)
    assert [steps_of(failed)[s]["status"] for s in "abcde"] == [
        "completed",
        "completed",
        "failed",
        "cancelled",
        "cancelled",
    ]
    BROKEN.discard(token)

    retried = await client.post(run["links"]["retry"], headers=headers)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "running"
    done = await finished_run(client, headers, run_id)
    assert done["status"] == "completed"
    assert [steps_of(done)[s]["attempts"] for s in "abcde"] == [1, 1, 2, 1, 1]
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    assert results["output"] == {"n": 5, "c_attempt": 2}

    events = await run_events(client, headers, run_id)
    started = [e["data"]["step_id"] for e in events if e["event_type"] == "StepStarted"]
    assert started == ["a", "b", "c", "c", "d", "e"]  # a and b never ran again
    [again] = [e for e in events if e["event_type"] == "WorkflowRetried"]
    assert again["data"]["steps"] == ["c", "d", "e"]
    assert again["metadata"]["actor"].startswith("user:")
    logs = (await client.get(run["links"]["logs"], headers=headers)).json()["items"]
    assert any(entry["message"].startswith("retried by user:") for entry in logs)


async def test_a_cancelled_run_retries_and_only_failed_or_cancelled_runs_may(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, (headers, viewer) = api
    run = await trigger_run(client, headers, "long_nap")
    await _until_status(client, headers, run["links"]["status"], "waiting")
    early = await client.post(run["links"]["retry"], headers=headers)
    assert (early.status_code, early.headers["content-type"]) == (409, "application/problem+json")
    assert "it is waiting" in early.json()["detail"]

    assert (await client.post(run["links"]["cancel"], headers=headers)).status_code == 202
    refused = await client.post(run["links"]["retry"], headers=viewer)
    assert refused.status_code == 403
    retried = await client.post(run["links"]["retry"], headers=headers)
    assert retried.status_code == 202, retried.text
    status = (await client.get(run["links"]["status"], headers=headers)).json()
    assert steps_of(status)["first"]["status"] == "completed"  # kept, not run again
    assert steps_of(status)["nap"]["status"] in ("pending", "running", "waiting")
    again = await client.post(run["links"]["retry"], headers=headers)
    assert again.status_code == 409  # running again: nothing to retry

    unknown = await client.post(f"/api/v1/workflows/{uuid.uuid4()}/retry", headers=headers)
    assert unknown.status_code == 404
