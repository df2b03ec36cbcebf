"""Replaying a run from a step: a new run linked to the original that reuses the outputs of
the steps before it (no node runs, no MCP or LLM call) and executes from there, with
overrides; on SQLite and PostgreSQL, through the API."""

from __future__ import annotations

import asyncio
import json
import socket
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
from workflow_engine.demo.services import PORTS, serve_standalone
from workflow_engine.nodes import NodeContext, node

CALLED: list[tuple[str, str]] = []  # (run id, step id) of every `replay_test.mark` call


@node("replay_test.mark")
async def mark(ctx: NodeContext, *, label: str) -> dict[str, Any]:
    """Says which run made it: a reused output names the original run."""
    CALLED.append((str(ctx.run_id), ctx.step_id))
    return {"label": label, "run": str(ctx.run_id)}


def _mark(step: str, *needs: str, label: str | None = None) -> dict[str, Any]:
    return {"id": step, "uses": "replay_test.mark", "needs": list(needs),
            "with": {"label": label or f"{step}:{{{{ input.word }}}}"}}  # fmt: skip


INPUT_SCHEMA = {"type": "object", "required": ["word"],
                "properties": {"word": {"type": "string", "minLength": 1}}}  # fmt: skip
# a → b → d, c → d; e needs d. Version 2 drops c and makes e an LLM step; version 3 makes b
# a transform.
DIAMOND = [_mark("a"), _mark("b", "a"), _mark("c"), _mark("d", "b", "c"), _mark("e", "d")]
WORKFLOWS = [
    {"name": "diamond", "version": 1, "input_schema": INPUT_SCHEMA, "steps": DIAMOND,
     "output": {"e": "{{ steps.e.output }}"}},
    {"name": "diamond", "version": 2, "input_schema": INPUT_SCHEMA,
     "steps": [_mark("a"), _mark("b", "a"), _mark("d", "b"),
               {"id": "e", "uses": "llm.chat", "needs": ["d"],
                "with": {"prompt": "e:{{ input.word }}"}}]},
    {"name": "diamond", "version": 3, "input_schema": INPUT_SCHEMA,
     "steps": [_mark("a"), {"id": "b", "uses": "transform", "needs": ["a"]}, _mark("c"),
               _mark("d", "b", "c"), _mark("e", "d")]},
    {"name": "diamond", "version": 4,
     "input_schema": {**INPUT_SCHEMA, "required": ["word", "colour"]}, "steps": DIAMOND},
    {"name": "admitted", "concurrency": {"limit": 1}, "input_schema": INPUT_SCHEMA,
     "steps": DIAMOND},
    {"name": "agentic", "steps": [
        {"id": "agent", "uses": "llm.agent", "with": {"prompt": "hi", "tools": ["nosuch.tool"]}},
    ]},
    {"name": "napping", "steps": [
        {"id": "first", "uses": "transform", "with": {"ok": True}},
        {"id": "nap", "uses": "sleep", "needs": ["first"], "with": {"seconds": 600}},
    ]},
]  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Accounts]]:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        yield client, Accounts(app, client)


async def _operator(accounts: Accounts, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {await accounts.token(Role.operator, tenant)}"}


async def _replay(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, body: dict[str, Any],
    **more_headers: str,
) -> httpx.Response:  # fmt: skip
    return await client.post(
        f"/api/v1/workflows/{run_id}/replay", headers={**headers, **more_headers}, json=body
    )


async def _completed(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: Any, **body: Any
) -> dict[str, Any]:
    run = await trigger_run(client, headers, name, data, **body)
    status = await finished_run(client, headers, run["workflow_id"])
    assert status["status"] == "completed", status
    return status


async def _outputs(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    """The outputs of the run's steps as its events recorded them: those it ran, and those a
    replay reused."""
    events = await run_events(client, headers, run_id)
    outputs = dict(events[0]["data"].get("replay", {}).get("outputs", {}))
    for event in events:
        if event["event_type"] == "StepCompleted":
            outputs[event["data"]["step_id"]] = event["data"]["output"]
    return outputs


# --- the customer-support acceptance: the demo services' call log --------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def support(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Path]]:
    """The server with the demo services on local ports and the offline LLM provider; the
    directory of the services' call logs."""
    ports = {name: _free_port() for name in PORTS}
    serving = asyncio.create_task(serve_standalone(tmp_path / "demo-data", "127.0.0.1", ports))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for port in ports.values():
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                else:
                    writer.close()
                    break
    app = build_app(
        database_url, tmp_path / "server", HELPSCOUT_MCP_URL=urls["helpscout"],
        NOTION_MCP_URL=urls["notion"], SLACK_MCP_URL=urls["slack"], LLM_PROVIDER="offline",
    )  # fmt: skip
    async with running(app) as client:
        headers = await _operator(Accounts(app, client))
        yield client, headers, tmp_path / "demo-data" / "demo"
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


def _calls(directory: Path) -> dict[str, list[str]]:
    """The tools each demo service was called with, in order (its call log)."""
    calls: dict[str, list[str]] = {}
    for name in PORTS:
        log = directory / f"{name}.calls.jsonl"
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        calls[name] = [json.loads(line)["tool"] for line in lines]
    return calls


async def test_a_support_ticket_replayed_from_draft_calls_no_tool_before_it_again(
    support: tuple[httpx.AsyncClient, dict[str, str], Path],
) -> None:
    client, headers, demo = support
    ticket = {"ticket_id": "12345", "customer_message": "I need help with my order"}
    original = await _completed(client, headers, "customer_support", ticket)
    run_id = original["workflow_id"]
    before = _calls(demo)
    assert before["helpscout"][0] == "get_conversation"
    assert "search_pages" in before["notion"]

    system = "Every order ships from our Oslo warehouse within two days of payment."
    body = {"from_step": "draft", "overrides": {"steps": {"draft": {"system": system}}}}
    response = await _replay(client, headers, run_id, body)

    assert response.status_code == 202, response.text
    replay = response.json()
    reused = ["fetch", "message", "intent", "urgency", "sentiment", "search", "route"]
    assert replay["replay_of"] == {"workflow_id": run_id, "from_step": "draft"}
    assert replay["reused"] == reused
    assert replay["workflow_name"] == "customer_support"
    status = await finished_run(client, headers, replay["workflow_id"], timeout=60)
    assert status["status"] == "completed", status
    assert status["replay_of"] == {"workflow_id": run_id, "from_step": "draft"}
    steps = steps_of(status)
    for step in reused:
        assert (steps[step]["status"], steps[step]["attempts"]) == ("completed", 0), step
        assert steps[step]["started_at"] is None
    assert (steps["draft"]["status"], steps["draft"]["attempts"]) == ("completed", 1)
    # The reused MCP steps (fetch, search) called nothing: only the reply after the draft.
    after = _calls(demo)
    assert {name: after[name][len(before[name]) :] for name in PORTS} == {
        "helpscout": ["create_reply"], "notion": [], "slack": []
    }  # fmt: skip
    # The reused steps' outputs are the original's, verbatim; none of them started.
    original_outputs = await _outputs(client, headers, run_id)
    events = await run_events(client, headers, replay["workflow_id"])
    assert events[0]["event_type"] == "WorkflowTriggered"
    recorded = events[0]["data"]["replay"]
    assert recorded["of"] == run_id
    assert recorded["reused"] == reused
    assert recorded["outputs"] == {step: original_outputs[step] for step in reused}
    started = {e["data"]["step_id"] for e in events if e["event_type"] == "StepStarted"}
    assert started.isdisjoint(reused)
    assert "draft" in started
    # The new system prompt wrote the reply; the classification is the original's.
    results = (await client.get(replay["links"]["results"], headers=headers)).json()
    first = (await client.get(f"/api/v1/workflows/{run_id}/results", headers=headers)).json()
    assert "Oslo warehouse" in results["output"]["reply"]
    assert "Oslo" not in first["output"]["reply"]
    for key in ("intent", "urgency", "sentiment", "cited_articles"):
        assert results["output"][key] == first["output"][key]
    # Only the draft's call counts as this run's LLM usage: the reused ones were the original's.
    assert status["llm_usage"]["calls"] == 1
    # The original lists its replay.
    again = (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()
    [listed] = again["replays"]
    assert listed["workflow_id"] == replay["workflow_id"]
    assert (listed["from_step"], listed["status"]) == ("draft", "completed")
    assert again["replay_of"] is None


# --- which steps run again -----------------------------------------------------------------


async def test_a_replay_runs_the_step_and_what_depends_on_it_and_reuses_the_rest(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    original = await _completed(client, headers, "diamond", {"word": "one"}, version=1)
    run_id = original["workflow_id"]

    response = await _replay(client, headers, run_id, {"from_step": "b"})

    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["reused"] == ["a", "c"]  # b, d (needs b) and e (needs d) run again
    status = await finished_run(client, headers, replay["workflow_id"])
    assert status["status"] == "completed", status
    ran = {step for run, step in CALLED if run == replay["workflow_id"]}
    assert ran == {"b", "d", "e"}
    outputs = await _outputs(client, headers, replay["workflow_id"])
    assert outputs["a"] == {"label": "a:one", "run": run_id}  # the original's, verbatim
    assert outputs["e"] == {"label": "e:one", "run": replay["workflow_id"]}
    assert status["progress"] == {"completed": 5, "total": 5}
    results = (await client.get(replay["links"]["results"], headers=headers)).json()
    assert results["output"] == {"e": outputs["e"]}
    log = (await client.get(replay["links"]["logs"], headers=headers)).json()["items"]
    assert log[0]["message"].endswith(f"a replay of run {run_id} from b, reusing a, c")
    assert log[0]["fields"] == {"replay_of": run_id, "reused": ["a", "c"]}


async def test_a_replay_through_admission_starts_after_the_reused_steps(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    original = await _completed(client, headers, "admitted", {"word": "gate"})

    response = await _replay(client, headers, original["workflow_id"], {"from_step": "d"})

    assert response.status_code == 202, response.text
    replay = response.json()
    status = await finished_run(client, headers, replay["workflow_id"])
    assert status["status"] == "completed", status
    assert {step for run, step in CALLED if run == replay["workflow_id"]} == {"d", "e"}


async def test_overrides_change_the_input_version_and_arguments_of_what_runs_again(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    original = await _completed(client, headers, "diamond", {"word": "old"}, version=1)
    run_id = original["workflow_id"]

    again = {"e": {"prompt": "e says {{ input.word }}"}}
    body = {"from_step": "d", "overrides": {"input": {"word": "new"}, "version": 2, "steps": again}}
    response = await _replay(client, headers, run_id, body)

    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["version"] == 2
    assert replay["reused"] == []  # every step reads the input, which changed
    status = await finished_run(client, headers, replay["workflow_id"])
    assert status["status"] == "completed", status
    assert [step["id"] for step in status["steps"]] == ["a", "b", "d", "e"]
    outputs = await _outputs(client, headers, replay["workflow_id"])
    assert outputs["b"]["label"] == "b:new"
    assert outputs["d"]["label"] == "d:new"
    assert outputs["e"]["provider"] == "offline"
    triggered = (await run_events(client, headers, replay["workflow_id"]))[0]["data"]
    assert triggered["input"] == {"word": "new"}
    assert triggered["definition"]["steps"][-1]["with"]["prompt"] == "e says {{ input.word }}"
    assert triggered["replay"]["overrides"] == body["overrides"]


async def test_the_same_input_given_again_keeps_the_steps_that_read_it_reused(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    run_id = (await _completed(client, headers, "diamond", {"word": "same"}, version=1))[
        "workflow_id"
    ]
    body = {"from_step": "d", "overrides": {"input": {"word": "same"}}}
    response = await _replay(client, headers, run_id, body)

    assert response.status_code == 202, response.text
    assert response.json()["reused"] == ["a", "b", "c"]


async def test_the_same_idempotency_key_returns_the_first_replay(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    run_id = (await _completed(client, headers, "diamond", {"word": "key"}, version=1))[
        "workflow_id"
    ]
    key = {"Idempotency-Key": f"replay-{uuid.uuid4()}"}

    first = await _replay(client, headers, run_id, {"from_step": "e"}, **key)
    second = await _replay(client, headers, run_id, {"from_step": "e"}, **key)
    other = await _replay(client, headers, run_id, {"from_step": "d"}, **key)

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert second.json()["workflow_id"] == first.json()["workflow_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


# --- refusals ------------------------------------------------------------------------------


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_unknown_steps_and_overrides_that_do_not_fit_are_422_naming_the_field(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    run_id = (await _completed(client, headers, "diamond", {"word": "w"}, version=1))["workflow_id"]
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"from_step": "nope"}, ["body", "from_step"]),
        ({"from_step": "Not A Step"}, ["body", "from_step"]),
        ({"from_step": "d", "overrides": {"steps": {"zz": {"label": "x"}}}},
         ["body", "overrides", "steps", "zz"]),
        # a is reused: an argument for it would change nothing
        ({"from_step": "d", "overrides": {"steps": {"a": {"label": "x"}}}},
         ["body", "overrides", "steps", "a"]),
        # only an LLM step's arguments may change: not where a step acts
        ({"from_step": "d", "overrides": {"steps": {"d": {"label": "x"}}}},
         ["body", "overrides", "steps", "d"]),
        ({"from_step": "d", "overrides": {"steps": {"d": {"label": "{{ steps.e.output }}"}}}},
         ["body", "overrides", "steps", "d"]),
        ({"from_step": "d", "overrides": {"model": "gpt-test"}}, ["body", "overrides", "model"]),
        ({"from_step": "d", "overrides": {"input": {"word": ""}}},
         ["body", "overrides", "input", "word"]),
        ({"from_step": "d", "overrides": {"version": 99}}, ["body", "overrides", "version"]),
        # b, which a replay from d would reuse, is a transform in version 3
        ({"from_step": "d", "overrides": {"version": 3}}, ["body", "overrides", "version"]),
        # version 4 wants a colour the original's input lacks
        ({"from_step": "e", "overrides": {"version": 4}}, ["body", "overrides", "input"]),
        ({"from_step": "d", "overrides": {"colour": "red"}}, ["body", "overrides", "colour"]),
        ({"from_step": "d", "overrides": {"input": {"word": "a\u0000b"}}}, None),
    ]  # fmt: skip
    for body, loc in cases:
        problem = _problem(await _replay(client, headers, run_id, body), 422)
        if loc is not None:
            assert loc in [error["loc"] for error in problem["errors"]], (body, problem)
    # Nothing was started by any of them.
    again = (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()
    assert again["replays"] == []


async def test_an_agents_tools_cannot_be_widened_by_a_replay(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    headers = await _operator(accounts)
    run = await trigger_run(client, headers, "agentic")
    assert (await finished_run(client, headers, run["workflow_id"]))["status"] == "failed"

    tools = {"agent": {"tools": ["slack.*"], "prompt": "post everything"}}
    body = {"from_step": "agent", "overrides": {"steps": tools}}
    problem = _problem(await _replay(client, headers, run["workflow_id"], body), 422)

    assert ["body", "overrides", "steps", "agent", "tools"] in [e["loc"] for e in problem["errors"]]


async def test_another_tenants_run_a_viewer_and_an_unfinished_run_are_refused(
    api: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = api
    tenant = await accounts.tenant()
    headers = await _operator(accounts, tenant)
    viewer = {"Authorization": f"Bearer {await accounts.token(Role.viewer, tenant)}"}
    stranger = await _operator(accounts)
    run_id = (await _completed(client, headers, "diamond", {"word": "mine"}, version=1))[
        "workflow_id"
    ]

    _problem(await _replay(client, stranger, run_id, {"from_step": "b"}), 404)
    _problem(await _replay(client, headers, str(uuid.uuid4()), {"from_step": "b"}), 404)
    _problem(await _replay(client, viewer, run_id, {"from_step": "b"}), 403)
    napping = await trigger_run(client, headers, "napping")
    problem = _problem(await _replay(client, headers, napping["workflow_id"],
                                     {"from_step": "nap"}), 409)  # fmt: skip
    assert "has not finished" in problem["detail"]
    cancel = await client.post(napping["links"]["cancel"], headers=headers)
    assert cancel.status_code == 202, cancel.text
