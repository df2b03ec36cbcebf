"""`POST /api/v1/workflows/trigger?wait=SECONDS`: the answer comes when the run ends (200 with
its outcome) or when the wait runs out (the usual 202), on SQLite and PostgreSQL.

In process (httpx's ASGI transport); a client that goes away, and a run finished by another
process, are in `tests/e2e/test_trigger_wait.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Accounts, build_app, finished_run, running
from workflow_engine.auth.permissions import Role
from workflow_engine.nodes import FatalStepError, NodeContext, node

TRIGGER = "/api/v1/workflows/trigger"


@node("wait.echo")
async def echo(ctx: NodeContext, **values: Any) -> dict[str, Any]:
    return {"values": values}


@node("wait.slow")
async def slow(ctx: NodeContext, *, seconds: float) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@node("wait.broken")
async def broken(ctx: NodeContext) -> dict[str, Any]:
    raise FatalStepError("the upstream said no")


WORKFLOWS = [
    {"name": "quick", "steps": [{"id": "echo", "uses": "wait.echo",
                                 "with": {"n": "{{ input.n }}"}}],
     "output": {"n": "{{ steps.echo.output['values'].n }}"}},
    {"name": "slow", "steps": [{"id": "nap", "uses": "wait.slow",
                                "with": {"seconds": "{{ input.seconds }}"}}],
     "output": "{{ steps.nap.output }}"},
    {"name": "broken", "steps": [{"id": "call", "uses": "wait.broken"}]},
]  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    env = getattr(request, "param", {})
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, **env)
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _trigger(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: Any, wait: Any = None
) -> httpx.Response:
    params = {} if wait is None else {"wait": wait}
    return await client.post(
        TRIGGER, headers=headers, params=params, json={"workflow_name": name, "data": data},
        timeout=120,
    )  # fmt: skip


async def _runs(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The tenant's runs, once there are `count` of them (triggers still waiting started them)."""
    async with asyncio.timeout(20):
        while True:
            runs = (await client.get("/api/v1/workflows", headers=headers)).json()["items"]
            if len(runs) >= count:
                return list(runs)
            await asyncio.sleep(0.05)


async def test_a_run_that_ends_within_the_wait_answers_200_with_its_output(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    started = time.monotonic()
    response = await _trigger(client, headers, "quick", {"n": 7}, wait=60)

    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 30  # woken by the run's end, not by the time running out
    body = response.json()
    assert body["status"] == "completed"
    assert body["output"] == {"n": 7}
    assert body["error"] is None
    assert body["finished_at"] is not None
    # The 202 body's fields are all there, and `output`/`error` are the results endpoint's.
    assert body["workflow_name"] == "quick"
    assert body["links"]["status"] == f"/api/v1/workflows/{body['workflow_id']}/status"
    results = (await client.get(body["links"]["results"], headers=headers)).json()
    assert (body["output"], body["error"]) == (results["output"], results["error"])


async def test_a_run_that_fails_within_the_wait_answers_200_with_its_error(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    response = await _trigger(client, headers, "broken", {}, wait=10)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["output"] is None
    assert "the upstream said no" in str(body["error"])


async def test_a_run_still_going_when_the_wait_runs_out_answers_202_and_goes_on(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    started = time.monotonic()
    response = await _trigger(client, headers, "slow", {"seconds": 3}, wait=0.5)
    took = time.monotonic() - started

    assert response.status_code == 202, response.text
    body = response.json()
    assert 0.5 <= took < 0.5 + 5
    assert body["status"] in ("queued", "running")
    assert set(body) == {"workflow_id", "workflow_name", "version", "status", "created_at",
                         "links"}  # fmt: skip
    status = await finished_run(client, headers, body["workflow_id"])
    assert status["status"] == "completed"


async def test_a_run_cancelled_during_the_wait_answers_200_cancelled(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    waiting = asyncio.create_task(_trigger(client, headers, "slow", {"seconds": 30}, wait=30))
    [run] = await _runs(client, headers, 1)
    run_id = run["workflow_id"]
    await asyncio.sleep(0.3)
    assert not waiting.done()
    cancelled = await client.post(f"/api/v1/workflows/{run_id}/cancel", headers=headers)
    assert cancelled.status_code == 202

    response = await asyncio.wait_for(waiting, 10)  # woken by the cancel, not the 30 s
    assert response.status_code == 200, response.text
    assert response.json()["workflow_id"] == run_id
    assert response.json()["status"] == "cancelled"
    assert response.json()["error"]["class"] == "cancelled"


async def test_wait_applies_to_the_run_an_idempotency_key_returns(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    keyed = {**headers, "Idempotency-Key": "nightly-2026-01-01"}
    first = await _trigger(client, keyed, "slow", {"seconds": 1}, wait=0)
    assert first.status_code == 202
    again = await _trigger(client, keyed, "slow", {"seconds": 1}, wait=15)

    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["workflow_id"] == first.json()["workflow_id"]
    assert again.json()["output"] == {"slept": 1}
    # Without `wait` nothing changes: the replay of a finished run is the usual 202.
    plain = await _trigger(client, keyed, "slow", {"seconds": 1})
    assert plain.status_code == 202
    assert plain.json()["status"] == "completed"
    assert "output" not in plain.json()
    # `wait=0` answers at once, with the outcome when there is one.
    now = await _trigger(client, keyed, "slow", {"seconds": 1}, wait=0)
    assert now.status_code == 200
    assert now.json()["output"] == {"slept": 1}


@pytest.mark.parametrize(
    ("wait", "kind"),
    [("60.5", "less_than_equal"), ("-1", "greater_than_equal"), ("nan", "finite_number"),
     ("inf", "finite_number"), ("soon", "float_parsing"), ("", "float_parsing")],
)  # fmt: skip
async def test_a_wait_that_is_not_a_number_within_the_cap_is_a_422_and_starts_nothing(
    api: tuple[httpx.AsyncClient, dict[str, str]], wait: str, kind: str
) -> None:
    client, headers = api
    response = await _trigger(client, headers, "quick", {"n": 1}, wait=wait)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (422, "Validation failed")
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [(["query", "wait"], kind)]
    assert (await client.get("/api/v1/workflows", headers=headers)).json()["items"] == []


@pytest.mark.parametrize("api", [{"TRIGGER_WAIT_MAX_SECONDS": "2.5"}], indirect=True)
async def test_the_cap_is_trigger_wait_max_seconds(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = api
    refused = await _trigger(client, headers, "quick", {"n": 1}, wait=3)
    assert refused.status_code == 422
    assert "less than or equal to 2.5" in refused.json()["errors"][0]["msg"]
    at_the_cap = await _trigger(client, headers, "quick", {"n": 1}, wait=2.5)
    assert at_the_cap.status_code == 200


@pytest.mark.parametrize(
    "api", [{"DB_MAX_CONNECTIONS": "3", "WORKER_CONCURRENCY": "8"}], indirect=True
)
async def test_waiting_triggers_hold_no_database_connection(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    """Eight triggers wait at once on a pool of three connections: the server keeps answering
    and running the steps, and every one of them gets its run's output."""
    client, headers = api
    waiting = [
        asyncio.create_task(_trigger(client, headers, "slow", {"seconds": 2}, wait=30))
        for _ in range(8)
    ]
    runs = await _runs(client, headers, 8)
    assert not any(task.done() for task in waiting)
    status = await client.get(f"/api/v1/workflows/{runs[0]['workflow_id']}/status",
                              headers=headers)  # fmt: skip
    assert status.status_code == 200

    answers = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    assert [answer.status_code for answer in answers] == [200] * 8
    assert [answer.json()["output"] for answer in answers] == [{"slept": 2}] * 8


async def test_the_openapi_document_shows_wait_and_both_answers(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _ = api
    spec = (await client.get("/api/v1/openapi.json")).json()
    operation = spec["paths"][TRIGGER]["post"]

    [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert (wait["in"], wait["required"]) == ("query", False)
    assert "TRIGGER_WAIT_MAX_SECONDS" in wait["description"]
    answers = operation["responses"]
    schema = "#/components/schemas/{}"
    assert answers["202"]["content"]["application/json"]["schema"] == {
        "$ref": schema.format("TriggeredRun")
    }
    assert answers["200"]["content"]["application/json"]["schema"] == {
        "$ref": schema.format("FinishedRun")
    }
    finished = spec["components"]["schemas"]["FinishedRun"]["properties"]
    assert {"status", "output", "error", "finished_at", "links"} <= set(finished)
    assert answers["422"]["content"]["application/problem+json"]
