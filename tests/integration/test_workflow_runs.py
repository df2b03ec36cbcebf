"""Runs end to end through the HTTP API and the embedded worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Uuid, bindparam, text

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.config.database_url import to_async_url
from workflow_engine.db import Database
from workflow_engine.events.projections import registry, replay
from workflow_engine.nodes import FatalStepError, NodeContext, StepError, node

INTERRUPTED: list[str] = []  # steps whose node coroutine was cancelled


@node("test.echo")
async def echo(ctx: NodeContext, **values: Any) -> dict[str, Any]:
    return {"values": values, "attempt": ctx.attempt}


@node("test.flaky")
async def flaky(ctx: NodeContext, *, fail_times: int, fatal: bool = False) -> dict[str, Any]:
    if fatal:
        raise FatalStepError("this cannot work")
    if ctx.attempt <= fail_times:
        raise StepError(f"attempt {ctx.attempt} failed", error_class="upstream_unavailable")
    return {"succeeded_on": ctx.attempt}


@node("test.chatty")
async def chatty(ctx: NodeContext, *, lines: int) -> dict[str, Any]:
    for n in range(lines):
        ctx.log.info(f"line {n}", n=n, at=datetime(2026, 1, 1))  # fields need not be JSON
    ctx.log.warning("careful", token_count=float("nan"))  # nor even storable
    ctx.log.info("raw bytes", event="a\u0000b")  # a NUL, under a logger's own argument name
    return {"lines": lines}


@node("test.slow")
async def slow(ctx: NodeContext, *, seconds: float) -> dict[str, Any]:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        INTERRUPTED.append(f"{ctx.run_id}/{ctx.step_id}")
        raise
    return {"slept": seconds}


def _flow(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "steps": steps, **extra}


WORKFLOWS = [
    _flow("fan", [
        {"id": "start", "uses": "test.echo", "with": {"n": "{{ input.n }}"}},
        {"id": "left", "uses": "test.echo", "needs": ["start"],
         "with": {"twice": "{{ steps.start.output['values'].n * 2 }}"}},
        {"id": "right", "uses": "test.echo", "needs": ["start"], "if": "input.n > 10"},
        {"id": "join", "uses": "test.echo", "needs": ["left", "right"]},
        {"id": "join_anyway", "uses": "test.echo", "needs": ["left", "right"],
         "run_if_needs_skipped": True, "with": {"left": "{{ steps.left.output['values'] }}"}},
    ], output={"left": "{{ steps.left.output['values'].twice }}",
               "right": "{{ steps.right.status }}"}),
    _flow("retrying", [
        {"id": "call", "uses": "test.flaky", "with": {"fail_times": "{{ input.fail_times }}"},
         "retry": {"max_attempts": 3, "initial_delay": 0.2, "backoff": 2, "jitter": 0}},
    ], output="{{ steps.call.output }}"),
    _flow("fatal", [
        {"id": "call", "uses": "test.flaky", "with": {"fail_times": 0, "fatal": True},
         "retry": {"max_attempts": 5, "initial_delay": 0.1}},
        {"id": "after", "uses": "test.echo", "needs": ["call"]},
    ]),
    _flow("tolerant", [
        {"id": "call", "uses": "test.flaky", "with": {"fail_times": 9}, "continue_on_error": True},
        {"id": "after", "uses": "test.echo", "needs": ["call"]},
    ]),
    _flow("sleepy", [
        {"id": "nap", "uses": "test.slow", "with": {"seconds": "{{ input.seconds }}"},
         "timeout": 30},
        {"id": "after", "uses": "test.echo", "needs": ["nap"]},
    ]),
    _flow("step_timeout", [
        {"id": "nap", "uses": "test.slow", "with": {"seconds": 5}, "timeout": 0.3},
    ]),
    _flow("run_timeout", [
        {"id": "nap", "uses": "test.slow", "with": {"seconds": 10}},
    ], timeout=0.5),
    _flow("strings", [
        {"id": "keep", "uses": "test.echo", "with": {"id": "{{ input.ticket_id }}",
                                                    "label": "ticket {{ input.ticket_id }}"}},
    ], input_schema={"type": "object", "required": ["ticket_id"],
                     "properties": {"ticket_id": {"type": "string", "pattern": "^[0-9]+$"}}},
       output="{{ steps.keep.output['values'] }}"),
    _flow("backoff", [
        {"id": "call", "uses": "test.flaky", "with": {"fail_times": 9},
         "retry": {"max_attempts": 5, "initial_delay": 30, "jitter": 0}},
    ]),
    _flow("bad_arguments", [
        {"id": "nap", "uses": "test.slow", "with": {"seconds": 1, "unexpected": True},
         "retry": {"max_attempts": 3, "initial_delay": 0.1}},
    ]),
    _flow("chatty", [{"id": "talk", "uses": "test.chatty", "with": {"lines": 3}}]),
    _flow("pinned", [{"id": "old_step", "uses": "test.echo"}], version=1),
    _flow("pinned", [{"id": "new_step", "uses": "test.echo"}], version=2),
]  # fmt: skip


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _until_step(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, step: str, status: str
) -> None:
    async with asyncio.timeout(15):
        while True:
            body = (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()
            if {s["id"]: s["status"] for s in body["steps"]}[step] == status:
                return
            await asyncio.sleep(0.05)


async def _one_outcome_per_attempt(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str
) -> None:
    """The event log holds at most one outcome for each step attempt, and each step ends once."""
    events = (await client.get(f"/api/v1/events/{run_id}", headers=headers,
                               params={"limit": 200})).json()["items"]  # fmt: skip
    outcomes = [
        (e["data"]["step_id"], e["data"].get("attempt"))
        for e in events
        if e["event_type"] in ("StepCompleted", "StepFailed", "StepSkipped", "StepCancelled")
    ]
    assert len(outcomes) == len(set(outcomes)), outcomes
    finals = [e["data"]["step_id"] for e in events
              if e["event_type"] in ("StepCompleted", "StepSkipped", "StepCancelled")
              or (e["event_type"] == "StepFailed" and "retry_at" not in e["data"])]  # fmt: skip
    assert len(finals) == len(set(finals)), finals


async def test_the_built_in_template_runs_to_its_output(api: tuple[Any, Any]) -> None:
    client, headers = api
    example = {
        "customer": "Ada Lovelace",
        "items": [
            {"name": "Analytical engine manual", "amount": 12.5},
            {"name": "Cards", "amount": 7},
        ],
    }
    run = await trigger_run(client, headers, "order_summary", example)
    assert run["status"] == "queued"
    assert run["links"]["results"] == f"/api/v1/workflows/{run['workflow_id']}/results"
    status = await finished_run(client, headers, run["workflow_id"])
    assert status["status"] == "completed", status
    assert status["progress"] == {"completed": 2, "total": 2}
    results = await client.get(run["links"]["results"], headers=headers)
    assert results.json()["output"] == {
        "summary": "Ada Lovelace: 2 item(s), total 19.50", "total": 19.5,
        "items": ["Analytical engine manual", "Cards"],
    }  # fmt: skip
    history = await client.get(run["links"]["events"], headers=headers)
    types = [e["event_type"] for e in history.json()["items"]]
    assert types[0] == "WorkflowTriggered"
    assert types[-1] == "WorkflowCompleted"
    assert types.count("StepStarted") == types.count("StepCompleted") == 2


async def test_fan_out_fan_in_with_a_false_if(api: tuple[Any, Any]) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "fan", {"n": 3})
    status = await finished_run(client, headers, run["workflow_id"])
    steps = steps_of(status)
    assert status["status"] == "completed"
    assert {k: v["status"] for k, v in steps.items()} == {
        "start": "completed", "left": "completed", "right": "skipped", "join": "skipped",
        "join_anyway": "completed",
    }  # fmt: skip
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    assert results["output"] == {"left": 6, "right": "skipped"}
    await _one_outcome_per_attempt(client, headers, run["workflow_id"])


async def test_retries_back_off_then_succeed(api: tuple[Any, Any]) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "retrying", {"fail_times": 2})
    status = await finished_run(client, headers, run["workflow_id"])
    assert status["status"] == "completed", status
    assert steps_of(status)["call"]["attempts"] == 3
    history = (await client.get(run["links"]["events"], headers=headers)).json()["items"]
    starts = [datetime.fromisoformat(e["recorded_at"]) for e in history
              if e["event_type"] == "StepStarted"]  # fmt: skip
    failures = [e["data"] for e in history if e["event_type"] == "StepFailed"]
    assert [f["error"]["class"] for f in failures] == ["upstream_unavailable"] * 2
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.2  # initial_delay
    assert gaps[1] >= 0.4  # doubled
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    assert results["output"] == {"succeeded_on": 3}


async def test_exhausted_and_fatal_failures_fail_the_run(api: tuple[Any, Any]) -> None:
    client, headers = api
    exhausted = await trigger_run(client, headers, "retrying", {"fail_times": 5})
    status = await finished_run(client, headers, exhausted["workflow_id"])
    assert status["status"] == "failed"
    assert steps_of(status)["call"]["attempts"] == 3
    assert status["error"]["step_id"] == "call"

    fatal = await trigger_run(client, headers, "fatal")
    status = await finished_run(client, headers, fatal["workflow_id"])
    steps = steps_of(status)
    assert (status["status"], steps["call"]["attempts"]) == ("failed", 1)  # never retried
    assert steps["call"]["error"]["message"] == "this cannot work"
    assert steps["after"]["status"] == "cancelled"
    results = (await client.get(fatal["links"]["results"], headers=headers)).json()
    assert results["error"] == {"step_id": "call", "class": "FatalStepError",
                                "message": "this cannot work", "retryable": False}  # fmt: skip


async def test_continue_on_error_lets_dependants_run(api: tuple[Any, Any]) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "tolerant")
    status = await finished_run(client, headers, run["workflow_id"])
    steps = steps_of(status)
    assert status["status"] == "completed"
    assert (steps["call"]["status"], steps["after"]["status"]) == ("failed", "completed")


async def test_step_and_run_timeouts(api: tuple[Any, Any]) -> None:
    client, headers = api
    step = await trigger_run(client, headers, "step_timeout")
    status = await finished_run(client, headers, step["workflow_id"])
    assert status["status"] == "failed"
    assert steps_of(status)["nap"]["error"]["class"] == "timeout"

    whole = await trigger_run(client, headers, "run_timeout")
    status = await finished_run(client, headers, whole["workflow_id"])
    assert status["status"] == "failed"
    assert status["error"]["class"] == "timeout"
    async with asyncio.timeout(5):  # the running step is interrupted, not left running
        while steps_of(status)["nap"]["status"] != "cancelled":
            await asyncio.sleep(0.05)
            status = (await client.get(whole["links"]["status"], headers=headers)).json()


async def test_cancel_interrupts_a_running_step(api: tuple[Any, Any]) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "sleepy", {"seconds": 30})
    await _until_step(client, headers, run["workflow_id"], "nap", "running")
    early = await client.get(run["links"]["results"], headers=headers)
    assert early.status_code == 409
    assert "running" in early.json()["detail"]

    cancelled = await client.post(run["links"]["cancel"], headers=headers)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    status = await finished_run(client, headers, run["workflow_id"], timeout=5)
    steps = steps_of(status)
    assert status["status"] == "cancelled"
    assert (steps["nap"]["status"], steps["after"]["status"]) == ("cancelled", "cancelled")
    assert f"{run['workflow_id']}/nap" in INTERRUPTED
    await _one_outcome_per_attempt(client, headers, run["workflow_id"])
    again = await client.post(run["links"]["cancel"], headers=headers)
    assert again.status_code == 202  # idempotent

    done = await trigger_run(client, headers, "fan", {"n": 1})
    await finished_run(client, headers, done["workflow_id"])
    too_late = await client.post(done["links"]["cancel"], headers=headers)
    assert too_late.status_code == 409


async def test_idempotency_keys(api: tuple[Any, Any]) -> None:
    client, headers = api
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = await client.post("/api/v1/workflows/trigger", headers=keyed,
                              json={"workflow_name": "fan", "data": {"n": 1}})  # fmt: skip
    second = await client.post("/api/v1/workflows/trigger", headers=keyed,
                               json={"data": {"n": 1}, "workflow_name": "fan"})  # fmt: skip
    assert first.status_code == second.status_code == 202
    assert second.json()["workflow_id"] == first.json()["workflow_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    other_body = await client.post("/api/v1/workflows/trigger", headers=keyed,
                                   json={"workflow_name": "fan", "data": {"n": 2}})  # fmt: skip
    assert other_body.status_code == 422
    assert other_body.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    listed = await client.get("/api/v1/workflows", params={"workflow_name": "fan"},
                              headers=headers)  # fmt: skip
    assert [r["workflow_id"] for r in listed.json()["items"]] == [first.json()["workflow_id"]]


async def test_bad_triggers_are_precise_4xx(api: tuple[Any, Any]) -> None:
    client, headers = api
    unknown = await client.post("/api/v1/workflows/trigger", headers=headers,
                                json={"workflow_name": "nope", "data": {}})  # fmt: skip
    assert unknown.status_code == 404
    available = "available: backoff, bad_arguments, chatty, customer_support, fan, fatal"
    assert available in unknown.json()["detail"]
    wrong_type = {"workflow_name": "strings", "data": {"ticket_id": 12}}
    invalid = await client.post("/api/v1/workflows/trigger", headers=headers, json=wrong_type)
    assert invalid.status_code == 422
    assert invalid.json()["errors"] == [{"loc": ["body", "data", "ticket_id"],
                                         "msg": "12 is not of type 'string'",
                                         "type": "schema.type"}]  # fmt: skip
    missing = await client.post("/api/v1/workflows/trigger", headers=headers,
                                json={"workflow_name": "strings", "data": {}})  # fmt: skip
    assert missing.json()["errors"][0]["msg"] == "'ticket_id' is a required property"
    nul = await client.post("/api/v1/workflows/trigger", headers=headers,
                            json={"workflow_name": "fan", "data": {"n": "a\u0000b"}})  # fmt: skip
    assert nul.status_code == 422
    not_found = await client.get(
        "/api/v1/workflows/00000000-0000-4000-8000-000000000000/status", headers=headers
    )
    assert not_found.status_code == 404


async def test_a_status_read_checks_the_credential_then_the_run_id(api: tuple[Any, Any]) -> None:
    client, headers = api
    anonymous = await client.get("/api/v1/workflows/not-a-run/status")
    assert anonymous.status_code == 401  # the credential first, whatever the id
    malformed = await client.get("/api/v1/workflows/not-a-run/status", headers=headers)
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == "application/problem+json"
    assert [(e["loc"], e["type"]) for e in malformed.json()["errors"]] == [
        (["path", "workflow_id"], "uuid_parsing")
    ]
    forged = await client.get(
        "/api/v1/workflows/not-a-run/status", headers={"Authorization": "Bearer not.a.token"}
    )
    assert forged.status_code == 401


async def test_a_string_of_digits_stays_a_string(api: tuple[Any, Any]) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "strings", {"ticket_id": "12345"})
    await finished_run(client, headers, run["workflow_id"])
    output = (await client.get(run["links"]["results"], headers=headers)).json()["output"]
    assert output == {"id": "12345", "label": "ticket 12345"}


async def test_runs_are_pinned_to_their_version(api: tuple[Any, Any]) -> None:
    client, headers = api
    old = await trigger_run(client, headers, "pinned", version=1)
    new = await trigger_run(client, headers, "pinned")
    assert (old["version"], new["version"]) == (1, 2)
    old_status = await finished_run(client, headers, old["workflow_id"])
    new_status = await finished_run(client, headers, new["workflow_id"])
    assert list(steps_of(old_status)) == ["old_step"]
    assert list(steps_of(new_status)) == ["new_step"]


async def test_other_tenants_runs_are_not_found(
    database_url: str, tmp_path: Path, api: tuple[Any, Any]
) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "fan", {"n": 1})
    app = build_app(database_url, tmp_path / "other", WORKER_ENABLED="false")
    async with running(app) as other:
        stranger = {"Authorization": f"Bearer {await Accounts(app, other).token(Role.admin)}"}
        for path in ("status", "results"):
            response = await other.get(f"/api/v1/workflows/{run['workflow_id']}/{path}",
                                       headers=stranger)  # fmt: skip
            assert response.status_code == 404
        cancel = await other.post(run["links"]["cancel"], headers=stranger)
        assert cancel.status_code == 404


async def test_cancel_during_a_retry_backoff_settles_the_waiting_step(
    api: tuple[Any, Any],
) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "backoff")
    await _until_step(client, headers, run["workflow_id"], "call", "scheduled")
    cancelled = await client.post(run["links"]["cancel"], headers=headers)
    assert cancelled.json()["status"] == "cancelled"  # nothing running: cancelled at once
    status = await finished_run(client, headers, run["workflow_id"])
    step = steps_of(status)["call"]
    assert (status["status"], step["status"], step["attempts"]) == ("cancelled", "cancelled", 1)
    assert status["progress"] == {"completed": 1, "total": 1}
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    assert results["error"]["class"] == "cancelled"
    await _one_outcome_per_attempt(client, headers, run["workflow_id"])


async def test_arguments_a_node_does_not_take_fail_the_step_without_retry(
    api: tuple[Any, Any],
) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "bad_arguments")
    status = await finished_run(client, headers, run["workflow_id"])
    step = steps_of(status)["nap"]
    assert (status["status"], step["attempts"]) == ("failed", 1)
    assert step["error"]["class"] == "bad_arguments"
    assert "unexpected" in step["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"workflow_name": "fan", "data": {"n": NaN}}',
        '{"workflow_name": "fan", "data": {"n": "\\ud800"}}',
        '{"workflow_name": "fan", "data": {"n": 1e999}}',
    ],
)
async def test_data_no_database_can_store_is_422(api: tuple[Any, Any], raw: str) -> None:
    client, headers = api
    response = await client.post(
        "/api/v1/workflows/trigger", content=raw,
        headers={**headers, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "yesterday"])
async def test_list_filters_need_an_aware_representable_time(
    api: tuple[Any, Any], since: str
) -> None:
    client, headers = api
    response = await client.get("/api/v1/workflows", params={"since": since}, headers=headers)
    assert response.status_code == 422, response.text
    audit = await client.get("/api/v1/events", params={"since": since}, headers=headers)
    assert audit.status_code in (403, 422)  # operators may not read the audit trail at all


async def test_the_list_filters_and_pages(api: tuple[Any, Any]) -> None:
    client, headers = api
    ids = [(await trigger_run(client, headers, "strings", {"ticket_id": str(n)}))["workflow_id"]
           for n in range(3)]  # fmt: skip
    for run_id in ids:
        await finished_run(client, headers, run_id)
    first = await client.get("/api/v1/workflows", headers=headers,
                             params={"workflow_name": "strings", "limit": 2})  # fmt: skip
    second = await client.get("/api/v1/workflows", headers=headers, params={
        "workflow_name": "strings", "limit": 2, "cursor": first.json()["next_cursor"]})  # fmt: skip
    listed = [r["workflow_id"] for r in first.json()["items"] + second.json()["items"]]
    assert listed == list(reversed(ids))  # newest first, each once
    assert second.json()["next_cursor"] is None
    only_completed = {"status": "completed", "workflow_name": "strings"}
    completed = await client.get("/api/v1/workflows", headers=headers, params=only_completed)
    assert len(completed.json()["items"]) == 3


async def test_logs_list_lifecycle_and_node_entries_in_order_with_stable_ids(
    api: tuple[Any, Any], database_url: str
) -> None:
    client, headers = api
    run = await trigger_run(client, headers, "chatty")
    await finished_run(client, headers, run["workflow_id"])
    page = await client.get(run["links"]["logs"], headers=headers, params={"limit": 3})
    assert page.status_code == 200, page.text
    rest = await client.get(run["links"]["logs"], headers=headers,
                            params={"after": page.json()["next_cursor"]})  # fmt: skip
    entries = page.json()["items"] + rest.json()["items"]
    assert [(e["level"], e["message"]) for e in entries] == [
        ("info", "run of chatty version 1 queued"),
        ("info", "step talk started (attempt 1)"),
        ("info", "line 0"), ("info", "line 1"), ("info", "line 2"),
        ("warning", "careful"),
        ("info", "raw bytes"),
        ("info", "step talk completed"),
        ("info", "run completed"),
    ]  # fmt: skip
    assert entries[2]["fields"] == {"n": 0, "at": "2026-01-01 00:00:00"}
    assert entries[5]["fields"] == {"unstorable": "the fields held a value JSON cannot carry"}
    assert (entries[2]["step"], entries[2]["attempt"]) == ("talk", 1)
    assert len({e["id"] for e in entries}) == len(entries)
    assert entries[6]["fields"]["unstorable"].endswith("contains the NUL character (\\u0000)")
    for bad_id in ("x.1", "².1", "1.9999999999"):
        bad = await client.get(run["links"]["logs"], headers=headers, params={"after": bad_id})
        assert bad.status_code == 422, bad_id


async def test_run_read_models_rebuild_row_for_row(api: tuple[Any, Any], database_url: str) -> None:
    client, headers = api
    runs = []
    for name, data in [("fan", {"n": 20}), ("chatty", {}), ("retrying", {"fail_times": 1})]:
        run = await trigger_run(client, headers, name, data)
        await finished_run(client, headers, run["workflow_id"])
        runs.append(uuid.UUID(run["workflow_id"]))
    db = Database(to_async_url(database_url))
    try:
        before = await _read_models(db, runs)
        assert all(before.values())
        for name in ("workflow_runs", "run_logs"):
            await replay(db, registry.get(name))
        assert await _read_models(db, runs) == before
    finally:
        await db.dispose()


async def _read_models(db: Database, runs: list[uuid.UUID]) -> dict[str, list[tuple[Any, ...]]]:
    """This test's runs' rows only: the session's database holds other tests' runs, which
    this app's worker may still be moving on (a sleep coming due) between the two reads."""
    keys = {"workflow_runs": ("id", "id"), "step_runs": ("run_id", "run_id, step_id"),
            "run_logs": ("run_id", "run_id, position, entry")}  # fmt: skip
    async with db.read() as conn:
        models = {}
        for table, (run_column, order) in keys.items():
            statement = text(
                f"SELECT * FROM {table} WHERE {run_column} IN :runs ORDER BY {order}"
            ).bindparams(bindparam("runs", expanding=True, type_=Uuid()))
            rows = await conn.execute(statement, {"runs": runs})
            models[table] = [tuple(row) for row in rows]
        return models


async def test_a_hundred_concurrent_triggers_are_all_accepted_and_run(
    api: tuple[Any, Any],
) -> None:
    """On SQLite this is the "database is locked" test: one writer at a time, none refused."""
    client, headers = api

    async def trigger(n: int) -> httpx.Response:
        return await client.post("/api/v1/workflows/trigger", headers=headers,
                                 json={"workflow_name": "fan", "data": {"n": n}})  # fmt: skip

    responses = await asyncio.gather(*(trigger(n) for n in range(100)))
    assert [r.status_code for r in responses] == [202] * 100
    for response in responses:
        status = await finished_run(client, headers, response.json()["workflow_id"], timeout=60)
        assert status["status"] == "completed", status
