"""`/metrics` after a scripted session: each counter moves by what the session did.

Metrics are per process and the tests share one, so every assertion is about the change
between two scrapes."""

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
    running,
    scrape,
    trigger_run,
    value,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.nodes.registry import FatalStepError, NodeContext, node


@node("metrics_test.nap")
async def nap(ctx: NodeContext, *, seconds: float) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {}


@node("metrics_test.refuse")
async def refuse(ctx: NodeContext) -> dict[str, Any]:
    raise FatalStepError("no")


WORKFLOWS = [
    {"name": "metrics_ok", "steps": [
        {"id": "shape", "uses": "transform", "with": {"x": 1}},
        {"id": "ask", "uses": "llm.chat", "needs": ["shape"],
         "with": {"prompt": "Summarise: the parcel arrived late and damaged."}},
    ], "output": {"usage": "{{ steps.ask.output.usage }}"}},
    {"name": "metrics_fail", "steps": [{"id": "refuse", "uses": "metrics_test.refuse"}]},
    {"name": "metrics_slow", "steps": [
        {"id": "nap", "uses": "metrics_test.nap", "with": {"seconds": 30}}]},
]  # fmt: skip


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = build_app(
        database_url, tmp_path, workflows=WORKFLOWS, LLM_PROVIDER="offline",
        RATE_LIMIT_ENDPOINTS='{"GET /api/v1/auth/me": {"requests_per_minute": 1, "burst_size": 1}}',
    )  # fmt: skip
    async with running(app) as client:
        yield client, app


async def test_a_scripted_session_moves_each_counter_by_what_it_did(api: Any) -> None:
    client, app = api
    accounts = Accounts(app, client)
    email = await accounts.user(Role.operator)
    before = scrape((await client.get("/metrics")).text)

    token = (await accounts.login(email))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    ok = await trigger_run(client, headers, "metrics_ok")
    ok_status = await finished_run(client, headers, ok["workflow_id"])
    failing = await trigger_run(client, headers, "metrics_fail")
    assert (await finished_run(client, headers, failing["workflow_id"]))["status"] == "failed"
    slow = await trigger_run(client, headers, "metrics_slow")
    await asyncio.sleep(0.3)
    cancel = await client.post(f"/api/v1/workflows/{slow['workflow_id']}/cancel", headers=headers)
    assert cancel.status_code in (200, 202), cancel.text
    assert (await finished_run(client, headers, slow["workflow_id"]))["status"] == "cancelled"
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 429

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = scrape(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert ok_status["status"] == "completed", (ok_status["error"], ok_status["steps"])
    login = {"method": "POST", "route": "/api/v1/auth/login", "status": "200"}
    assert delta("http_requests_total", **login) == 1
    me = {"method": "GET", "route": "/api/v1/auth/me"}
    assert delta("http_requests_total", **me, status="200") == 1
    assert delta("http_requests_total", **me, status="429") == 1
    assert delta("http_request_duration_seconds_count", **me) == 2
    assert delta("rate_limit_rejected_total") == 1
    trigger = {"method": "POST", "route": "/api/v1/workflows/trigger", "status": "202"}
    assert delta("http_requests_total", **trigger) == 3

    for workflow in ("metrics_ok", "metrics_fail", "metrics_slow"):
        assert delta("workflow_runs_started_total", workflow=workflow) == 1
    assert delta("workflow_runs_finished_total", workflow="metrics_ok", status="completed") == 1
    assert delta("workflow_runs_finished_total", workflow="metrics_fail", status="failed") == 1
    slow_end = {"workflow": "metrics_slow", "status": "cancelled"}
    assert delta("workflow_runs_finished_total", **slow_end) == 1
    assert delta("workflow_run_duration_seconds_count", **slow_end) == 1
    assert delta("workflow_run_duration_seconds_sum", **slow_end) >= 0.3

    assert delta("workflow_step_attempts_total", node="transform", outcome="completed") == 1
    assert delta("workflow_step_attempts_total", node="llm.chat", outcome="completed") == 1
    refused = {"node": "metrics_test.refuse", "outcome": "failed"}
    assert delta("workflow_step_attempts_total", **refused) == 1
    assert delta("workflow_step_attempts_total", node="metrics_test.nap",
                 outcome="cancelled") == 1  # fmt: skip
    assert delta("workflow_step_duration_seconds_count", node="transform",
                 outcome="completed") == 1  # fmt: skip
    assert delta("workflow_step_schedule_to_start_seconds_count") == 4

    results = (await client.get(ok["links"]["results"], headers=headers)).json()
    usage = results["output"]["usage"]
    offline = {"provider": "offline", "model": "offline-heuristics-1"}
    assert delta("llm_requests_total", **offline, outcome="ok") == 1
    assert delta("llm_tokens_total", **offline, kind="prompt") == usage["prompt_tokens"]
    assert delta("llm_tokens_total", **offline, kind="completion") == usage["completion_tokens"]
    assert delta("llm_cost_usd_total", **offline) == 0  # the offline provider is free

    assert delta("events_appended_total", aggregate_type="runs") >= 3 * 3
    assert delta("events_appended_total", aggregate_type="audit") == 0
    assert value(after, "workflow_engine_database_facts_up") == 1
    assert ("workflow_queue_tasks", frozenset({("state", "ready")})) in after
    assert ("workflow_runs_active", frozenset({("status", "running")})) in after
    assert ("registry_services", frozenset({("status", "healthy")})) in after
    assert value(after, "http_requests_in_flight") >= 1  # this scrape itself


async def test_distinct_run_ids_do_not_add_series(api: Any) -> None:
    client, app = api
    token = await Accounts(app, client).token(Role.viewer)
    headers = {"Authorization": f"Bearer {token}"}
    await client.get(f"/api/v1/workflows/{uuid.uuid4()}/status", headers=headers)  # the 404 series
    before = scrape((await client.get("/metrics")).text)
    for _ in range(1000):
        missing = await client.get(f"/api/v1/workflows/{uuid.uuid4()}/status", headers=headers)
        assert missing.status_code == 404
    after = scrape((await client.get("/metrics")).text)
    assert set(after) == set(before)
    route = {"method": "GET", "route": "/api/v1/workflows/{workflow_id}/status", "status": "404"}
    assert (
        value(after, "http_requests_total", **route) - value(before, "http_requests_total", **route)
        == 1000
    )


async def test_metrics_can_be_closed_or_turned_off(database_url: str, tmp_path: Path) -> None:
    guarded = build_app(database_url, tmp_path / "a", METRICS_TOKEN="scrape-secret-123")
    async with running(guarded) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
        assert right.status_code == 200
        assert "http_requests_total" in right.text
    accented = build_app(database_url, tmp_path / "c", METRICS_TOKEN="clé-secrète-123")
    async with running(accented) as client:
        sent = {"Authorization": "Bearer clé-secrète-123".encode()}  # the token's UTF-8 bytes
        assert (await client.get("/metrics", headers=sent)).status_code == 200
    off = build_app(database_url, tmp_path / "b", METRICS_ENABLED="false")
    async with running(off) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_a_mounted_apps_routes_are_named_with_the_mount(api: Any) -> None:
    client, _ = api
    answered = await client.get("/demo/mcp/notion/")  # the demo Notion MCP server
    assert answered.status_code < 500, answered.text
    samples = scrape((await client.get("/metrics")).text)
    routes = {
        dict(labels).get("route") for name, labels in samples if name == "http_requests_total"
    }
    assert "/demo/mcp/notion/" in routes, (answered.status_code, answered.text, routes)
    assert "/" not in routes
    assert "/mcp" not in routes
