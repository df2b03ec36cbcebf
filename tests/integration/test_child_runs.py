"""`workflow` steps: child runs linked to their parent, waited for without a worker, on SQLite
and PostgreSQL, through the API."""

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
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import InvalidDefinition
from workflow_engine.nodes.registry import registry as nodes

WORKFLOWS = [
    {"name": "double", "input_schema": {"type": "object", "required": ["n"]},
     "steps": [{"id": "d", "uses": "transform", "with": {"doubled": "{{ input.n * 2 }}"}}],
     "output": "{{ steps.d.output.doubled }}"},
    {"name": "two_children", "steps": [
        {"id": "a", "uses": "workflow", "with": {"name": "double", "data": {"n": 2}}},
        {"id": "b", "uses": "workflow", "with": {"name": "double", "data": {"n": "{{ input.n }}"}}},
    ], "output": {"a": "{{ steps.a.output }}", "b": "{{ steps.b.output }}"}},
    {"name": "broken", "steps": [  # a time without its zone: known only when it runs
        {"id": "boom", "uses": "sleep", "with": {"until": "{{ '2030-01-01T00:00:00' }}"}},
    ]},
    {"name": "retries_a_child", "steps": [
        {"id": "c", "uses": "workflow", "with": {"name": "broken"},
         "retry": {"max_attempts": 2, "initial_delay": 0.1, "jitter": 0}},
    ]},
    {"name": "slow", "steps": [{"id": "nap", "uses": "sleep", "with": {"seconds": 600}}]},
    {"name": "grandparent", "steps": [{"id": "p", "uses": "workflow", "with": {"name": "parent"}}]},
    {"name": "parent", "steps": [{"id": "c", "uses": "workflow", "with": {"name": "slow"}}]},
    {"name": "bad_child_input", "steps": [
        {"id": "c", "uses": "workflow", "with": {"name": "double", "data": {"m": 1}}},
    ]},
    {"name": "forever",
     "steps": [{"id": "again", "uses": "workflow", "with": {"name": "forever"}}]},
]  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any]]:
    # Two worker slots: parents that held one while their children ran would deadlock.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="2")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, app, {"Authorization": f"Bearer {token}"}


async def _status(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    return (await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)).json()


async def _only_child(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    async with asyncio.timeout(15):
        while True:
            children = (await _status(client, headers, run_id))["children"]
            if children:
                [child] = children
                return child
            await asyncio.sleep(0.05)


async def _results(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> Any:
    return (await client.get(f"/api/v1/workflows/{run_id}/results", headers=headers)).json()


async def test_a_parent_completes_with_its_childrens_outputs(api: Any) -> None:
    client, _app, headers = api
    run = await trigger_run(client, headers, "two_children", {"n": 5})
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed", done
    assert (await _results(client, headers, run["workflow_id"]))["output"] == {"a": 4, "b": 10}

    assert done["parent"] is None
    children = {child["step"]: child for child in done["children"]}
    assert set(children) == {"a", "b"}
    assert {c["workflow_name"] for c in children.values()} == {"double"}
    assert {c["status"] for c in children.values()} == {"completed"}
    child = await _status(client, headers, children["b"]["workflow_id"])
    assert child["parent"] == {"workflow_id": run["workflow_id"], "step": "b"}
    assert child["children"] == []
    assert (await _results(client, headers, children["b"]["workflow_id"]))["output"] == 10


async def test_a_failing_child_fails_the_step_after_the_parents_retries(api: Any) -> None:
    client, _app, headers = api
    run = await trigger_run(client, headers, "retries_a_child")
    done = await finished_run(client, headers, run["workflow_id"])
    step = steps_of(done)["c"]
    assert (done["status"], step["status"], step["attempts"]) == ("failed", "failed", 2)
    assert step["error"]["class"] == "child_failed"
    assert "time zone" in step["error"]["message"]  # why the child failed
    assert [c["status"] for c in done["children"]] == ["failed", "failed"]  # one per attempt


async def test_cancelling_a_parent_cancels_its_descendants(api: Any) -> None:
    client, _app, headers = api
    run = await trigger_run(client, headers, "grandparent")
    parent = await _only_child(client, headers, run["workflow_id"])
    grandchild = await _only_child(client, headers, parent["workflow_id"])
    async with asyncio.timeout(15):
        while True:  # until the grandchild sleeps
            if (await _status(client, headers, grandchild["workflow_id"]))["status"] == "waiting":
                break
            await asyncio.sleep(0.05)

    cancelled = await client.post(f"/api/v1/workflows/{run['workflow_id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"  # nothing held: at once
    for descendant in (parent, grandchild):
        ended = await finished_run(client, headers, descendant["workflow_id"])
        assert ended["status"] == "cancelled"
        assert ended["error"]["message"].startswith("cancelled by run:")


async def test_a_child_that_cannot_start_fails_the_step(api: Any) -> None:
    client, _app, headers = api
    run = await trigger_run(client, headers, "bad_child_input")
    done = await finished_run(client, headers, run["workflow_id"])
    error = steps_of(done)["c"]["error"]
    assert (done["status"], error["class"]) == ("failed", "bad_arguments")
    assert "does not match the input schema of double" in error["message"]
    assert "'n' is a required property" in error["message"]
    assert done["children"] == []


async def test_children_nest_ten_deep_at_most(api: Any) -> None:
    client, _app, headers = api
    run = await trigger_run(client, headers, "forever")
    done = await finished_run(client, headers, run["workflow_id"], timeout=30)
    assert done["status"] == "failed"
    depth, current = 0, done
    while current["children"]:
        depth += 1
        current = await _status(client, headers, current["children"][0]["workflow_id"])
    assert depth == 10
    assert "children nest at most 10 deep" in steps_of(current)["again"]["error"]["message"]


def test_a_workflow_step_names_a_workflow_when_defined() -> None:
    catalog = DefinitionCatalog(nodes)
    for arguments, expected in (
        ({"data": {}}, "needs `name`"),
        ({"name": "double", "input": {}}, "does not take 'input'"),
        ({"name": "Not A Name"}, "`name` must be a workflow's name"),
        ({"name": "double", "version": 0}, "`version` must be a whole number from 1"),
    ):
        with pytest.raises(InvalidDefinition) as raised:
            catalog.register({"name": "bad_parent", "steps": [
                {"id": "c", "uses": "workflow", "with": arguments}]})  # fmt: skip
        assert expected in str(raised.value), (arguments, str(raised.value))
