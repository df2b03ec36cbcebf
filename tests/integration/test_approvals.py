"""`approval` steps: a run waits, holding no worker, until a person approves or rejects through
the API (or the timeout decides), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.demo.services import PORTS, serve_standalone
from workflow_engine.engine.catalog import DefinitionCatalog
from workflow_engine.engine.definitions import InvalidDefinition
from workflow_engine.nodes.registry import registry as nodes

ASK = {"proposal": "{{ steps.draft.output }}", "message": "Send {{ input.text }}?"}
WORKFLOWS = [
    {"name": "reviewed", "steps": [
        {"id": "draft", "uses": "transform", "with": {"text": "{{ input.text }}"}},
        {"id": "review", "uses": "approval", "needs": ["draft"], "with": ASK},
        {"id": "send", "uses": "transform", "needs": ["review"],
         "with": {"sent": "{{ steps.review.output.data.text }}"}},
    ], "output": {"sent": "{{ steps.send.output.sent }}", "review": "{{ steps.review.output }}"}},
    {"name": "lenient", "steps": [
        {"id": "draft", "uses": "transform", "with": {"text": "{{ input.text }}"}},
        {"id": "review", "uses": "approval", "needs": ["draft"],
         "with": {**ASK, "on_reject": "continue"}},
    ], "output": "{{ steps.review.output }}"},
    {"name": "approves_in_time", "steps": [
        {"id": "review", "uses": "approval",
         "with": {"proposal": {"n": 1}, "timeout": 0.3, "default": "approve"}},
    ], "output": "{{ steps.review.output }}"},
    {"name": "rejects_in_time", "steps": [
        {"id": "review", "uses": "approval", "with": {"proposal": {"n": 2}, "timeout": 0.3}},
    ]},
]  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, str], Accounts, str]]:
    # One worker slot: a waiting approval that held it would stop every other run.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="1")
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        token = await accounts.token(Role.operator, tenant)
        yield client, app, {"Authorization": f"Bearer {token}"}, accounts, tenant


async def _listed(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, **params: Any
) -> dict[str, Any]:
    """The run's approval, once `GET /api/v1/approvals` lists it."""
    async with asyncio.timeout(15):
        while True:
            page = await client.get("/api/v1/approvals", headers=headers, params=params)
            assert page.status_code == 200, page.text
            found = [a for a in page.json()["items"] if a["workflow_id"] == run_id]
            if found:
                [approval] = found
                return approval
            await asyncio.sleep(0.05)


async def _listed_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    page = await client.get("/api/v1/approvals", headers=headers)
    return [a["workflow_id"] for a in page.json()["items"]]


async def _decide(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, how: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/api/v1/workflows/{run_id}/{how}", headers=headers, json=body)


async def _events(client: httpx.AsyncClient, headers: dict[str, str], aggregate: str) -> Any:
    return (await client.get(f"/api/v1/events/{aggregate}", headers=headers)).json()["items"]


async def test_a_run_waits_and_goes_on_with_the_approvers_edit(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    run = await trigger_run(client, headers, "reviewed", {"text": "Hello"})
    run_id = run["workflow_id"]
    approval = await _listed(client, headers, run_id)
    assert (approval["workflow_name"], approval["step"], approval["attempt"]) == (
        "reviewed", "review", 1,
    )  # fmt: skip
    assert approval["proposal"] == {"text": "Hello"}
    assert approval["message"] == "Send Hello?"
    assert approval["expires_at"] is None
    status = (await client.get(run["links"]["status"], headers=headers)).json()
    assert status["status"] == "waiting"  # no worker held: the one slot is free
    assert steps_of(status)["review"]["status"] == "waiting"
    logs = (await client.get(run["links"]["logs"], headers=headers)).json()["items"]
    assert "step review waiting for an approval" in [entry["message"] for entry in logs]
    other = await trigger_run(client, headers, "approves_in_time")
    assert (await finished_run(client, headers, other["workflow_id"]))["status"] == "completed"

    decided = await _decide(client, headers, run_id, "approve", step="review",
                            comment="warmer", data={"text": "Hello there!"})  # fmt: skip
    assert decided.status_code == 200, decided.text
    decision = decided.json()
    assert decision["decision"] == "approved"
    assert decision["by"].startswith("user:")
    done = await finished_run(client, headers, run_id)
    assert done["status"] == "completed", done
    output = (await client.get(run["links"]["results"], headers=headers)).json()["output"]
    assert output["sent"] == "Hello there!"
    review = output["review"]
    assert (review["approved"], review["decision"], review["comment"]) == (
        True,
        "approved",
        "warmer",
    )
    assert (review["by"], review["data"]) == (decision["by"], {"text": "Hello there!"})

    events = await _events(client, headers, approval["approval_id"])
    assert [e["event_type"] for e in events] == ["ApprovalRequested", "ApprovalGranted"]
    granted = events[1]
    assert granted["aggregate_type"] == "approvals"
    assert granted["metadata"]["actor"] == decision["by"]
    assert granted["data"]["by"] == decision["by"]
    assert (granted["data"]["edited"], granted["data"]["data"]) == (True, {"text": "Hello there!"})
    assert run_id not in await _listed_ids(client, headers)

    again = await _decide(client, headers, run_id, "approve", step="review")
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"


async def test_a_rejection_fails_the_run_with_its_reason(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    run = await trigger_run(client, headers, "reviewed", {"text": "Refund?"})
    approval = await _listed(client, headers, run["workflow_id"])
    rejected = await _decide(client, headers, run["workflow_id"], "reject", step="review",
                             comment="promises a refund we do not give")  # fmt: skip
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["data"] == {"text": "Refund?"}  # the proposal, unchanged
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "failed"
    error = steps_of(done)["review"]["error"]
    assert error["class"] == "approval_rejected"
    assert error["message"] == "promises a refund we do not give"
    assert "promises a refund we do not give" in json.dumps(done["error"])
    assert steps_of(done)["send"]["status"] in ("cancelled", "pending", "skipped")
    events = await _events(client, headers, approval["approval_id"])
    assert events[-1]["event_type"] == "ApprovalRejected"
    assert events[-1]["metadata"]["actor"] == rejected.json()["by"]

    # A retry asks again: a new request for the step's next attempt.
    retried = await client.post(f"/api/v1/workflows/{run['workflow_id']}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    again = await _listed(client, headers, run["workflow_id"])
    assert (again["attempt"], again["approval_id"] != approval["approval_id"]) == (2, True)
    await _decide(client, headers, run["workflow_id"], "approve", step="review")
    assert (await finished_run(client, headers, run["workflow_id"]))["status"] == "completed"


async def test_on_reject_continue_completes_with_the_decision(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    run = await trigger_run(client, headers, "lenient", {"text": "Maybe"})
    await _listed(client, headers, run["workflow_id"])
    await _decide(client, headers, run["workflow_id"], "reject", step="review")
    done = await finished_run(client, headers, run["workflow_id"])
    assert done["status"] == "completed"
    output = (await client.get(run["links"]["results"], headers=headers)).json()["output"]
    assert (output["approved"], output["decision"], output["comment"]) == (False, "rejected", None)


async def test_the_timeout_takes_the_default_decision(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    approving = await trigger_run(client, headers, "approves_in_time")
    rejecting = await trigger_run(client, headers, "rejects_in_time")
    done = await finished_run(client, headers, approving["workflow_id"])
    assert done["status"] == "completed"
    output = (await client.get(approving["links"]["results"], headers=headers)).json()["output"]
    assert (output["approved"], output["by"], output["data"]) == (True, "timeout", {"n": 1})
    failed = await finished_run(client, headers, rejecting["workflow_id"])
    error = steps_of(failed)["review"]["error"]
    assert (failed["status"], error["class"]) == ("failed", "approval_rejected")
    assert error["message"] == "timed out: no decision within 0.3 s"
    late = await _decide(client, headers, rejecting["workflow_id"], "approve", step="review")
    assert late.status_code == 409


async def test_who_may_decide_and_what_is_refused(api: Any) -> None:
    client, app, headers, accounts, tenant = api
    run = await trigger_run(client, headers, "reviewed", {"text": "Hi"})
    run_id = run["workflow_id"]
    await _listed(client, headers, run_id)

    viewer = {"Authorization": f"Bearer {await accounts.token(Role.viewer, tenant)}"}
    elsewhere = {"Authorization": f"Bearer {await accounts.token(Role.viewer)}"}
    for who in (viewer, elsewhere):
        refused = await _decide(client, who, run_id, "approve", step="review")
        assert refused.status_code == 403, refused.text
    assert run_id in await _listed_ids(client, viewer)  # a viewer sees what waits

    stranger = {"Authorization": f"Bearer {await Accounts(app, client).token(Role.operator)}"}
    assert (await _decide(client, stranger, run_id, "approve", step="review")).status_code == 404
    assert run_id not in await _listed_ids(client, stranger)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await _decide(client, headers, unknown, "approve", step="review")).status_code == 404

    for body, status in (
        ({}, 422),  # no step
        ({"step": "Not A Step"}, 422),
        ({"step": "review", "surprise": 1}, 422),
        ({"step": "review", "comment": "x" * 2001}, 422),
        ({"step": "nope"}, 409),  # no such step
        ({"step": "draft"}, 409),  # not an approval step
    ):
        answer = await _decide(client, headers, run_id, "approve", **body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    with_data = await _decide(client, headers, run_id, "reject", step="review", data={"x": 1})
    assert with_data.status_code == 422  # only an approval edits the proposal
    assert (
        await client.get("/api/v1/approvals?cursor=nonsense", headers=headers)
    ).status_code == 422

    cancelled = await client.post(f"/api/v1/workflows/{run_id}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    assert run_id not in await _listed_ids(client, headers)
    late = await _decide(client, headers, run_id, "approve", step="review")
    assert late.status_code == 409
    assert "cancelled" in late.json()["detail"]


async def test_the_list_pages_oldest_first(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    runs = [await trigger_run(client, headers, "reviewed", {"text": str(n)}) for n in range(3)]
    for run in runs:
        await _listed(client, headers, run["workflow_id"])
    first = (await client.get("/api/v1/approvals", headers=headers, params={"limit": 2})).json()
    after = {"limit": 2, "cursor": first["next_cursor"]}
    second = (await client.get("/api/v1/approvals", headers=headers, params=after)).json()
    listed = [a["workflow_id"] for a in first["items"] + second["items"]]
    assert listed == [run["workflow_id"] for run in runs]
    assert second["next_cursor"] is None
    only = await client.get("/api/v1/approvals", headers=headers,
                            params={"workflow_name": "lenient"})  # fmt: skip
    assert only.json()["items"] == []


async def test_an_approval_survives_a_restart(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        accounts = Accounts(app, client)
        email = await accounts.user(Role.operator)
        headers = {"Authorization": f"Bearer {(await accounts.login(email))['token']}"}
        run = await trigger_run(client, headers, "reviewed", {"text": "Before"})
        await _listed(client, headers, run["workflow_id"])
    again = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(again) as client:
        token = (await Accounts(again, client).login(email))["token"]
        headers = {"Authorization": f"Bearer {token}"}
        await _listed(client, headers, run["workflow_id"])
        decided = await _decide(client, headers, run["workflow_id"], "approve", step="review",
                                data={"text": "After"})  # fmt: skip
        assert decided.status_code == 200, decided.text
        done = await finished_run(client, headers, run["workflow_id"])
        output = (await client.get(run["links"]["results"], headers=headers)).json()["output"]
    assert (done["status"], output["sent"]) == ("completed", "After")


async def test_the_node_list_shows_approval_with_its_arguments(api: Any) -> None:
    client, _app, headers, _accounts, _tenant = api
    listed = (await client.get("/api/v1/workflows/nodes", headers=headers)).json()["items"]
    [approval] = [node for node in listed if node["name"] == "approval"]
    assert approval["module"] == "engine"
    assert set(approval["arguments"]["properties"]) == {
        "proposal", "message", "timeout", "default", "on_reject",
    }  # fmt: skip


def test_an_approval_checks_its_arguments_when_defined() -> None:
    catalog = DefinitionCatalog(nodes)
    for arguments, expected in (
        ({"proposal": 1, "when": 5}, "does not take 'when'"),
        ({"timeout": 0}, "`timeout` must be seconds"),
        ({"timeout": 10, "default": "maybe"}, "`default` must be `approve` or `reject`"),
        ({"default": "approve"}, "give `timeout` too"),
        ({"on_reject": "retry"}, "`on_reject` must be `fail` or `continue`"),
        ({"message": 5}, "`message` must be text"),
    ):
        with pytest.raises(InvalidDefinition) as raised:
            catalog.register({"name": "bad_approval", "steps": [
                {"id": "a", "uses": "approval", "with": arguments}]})  # fmt: skip
        assert expected in str(raised.value), (arguments, str(raised.value))


# --- the customer_support template ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _listening(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
            else:
                writer.close()
                return


@pytest.fixture
async def support(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Path, str]]:
    """The app with the demo HelpScout, Notion and Slack on local ports, the offline LLM; the
    HelpScout call log's path and the demo HelpScout's URL."""
    ports = {name: _free_port() for name in PORTS}
    serving = asyncio.create_task(serve_standalone(tmp_path / "demo-data", "127.0.0.1", ports))
    for port in ports.values():
        await _listening(port)
    urls = {f"{name.upper()}_MCP_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()}
    app = build_app(database_url, tmp_path, LLM_PROVIDER="offline", **urls)
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        calls = tmp_path / "demo-data" / "demo" / "helpscout.calls.jsonl"
        yield client, {"Authorization": f"Bearer {token}"}, calls, urls["HELPSCOUT_MCP_URL"]
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


async def _drafts(helpscout: str, conversation_id: str) -> list[str]:
    """The bodies of the conversation's draft replies, as the demo HelpScout stores them."""
    async with Client(f"{helpscout}/mcp") as client:
        found = await client.call_tool("get_conversation", {"conversation_id": conversation_id})
    assert found.structured_content is not None
    return [t["body"] for t in found.structured_content["threads"] if t.get("draft")]


def _replies(calls: Path) -> list[dict[str, Any]]:
    if not calls.exists():
        return []
    entries = [json.loads(line) for line in calls.read_text().splitlines()]
    return [entry["arguments"] for entry in entries if entry["tool"] == "create_reply"]


async def test_customer_support_sends_the_approved_edit_of_its_draft(support: Any) -> None:
    client, headers, calls, helpscout = support
    drafts_before = await _drafts(helpscout, "12345")
    ticket = {"ticket_id": "12345", "customer_message": "I need help with my order",
              "require_approval": True}  # fmt: skip
    run = await trigger_run(client, headers, "customer_support", ticket)
    approval = await _listed(client, headers, run["workflow_id"])
    assert approval["step"] == "approve"
    assert isinstance(approval["proposal"], str)  # the draft
    assert approval["proposal"]
    assert approval["message"] == "Send this reply to ticket 12345?"
    assert _replies(calls) == []  # nothing sent while it waits

    edited = "Your order ships tomorrow; the tracking link follows by email."
    decided = await _decide(client, headers, run["workflow_id"], "approve", step="approve",
                            data=edited)  # fmt: skip
    assert decided.status_code == 200, decided.text
    done = await finished_run(client, headers, run["workflow_id"], timeout=60)
    assert done["status"] == "completed", done
    assert len(_replies(calls)) == 1  # the call log: sent once, after the approval
    [sent] = (await _drafts(helpscout, "12345"))[len(drafts_before) :]
    assert edited in sent
    assert approval["proposal"] not in sent
    output = (await client.get(run["links"]["results"], headers=headers)).json()["output"]
    assert output["reply"] == edited
    assert [a["action"] for a in output["actions"]] == ["reply_drafted"]


async def test_customer_support_sends_nothing_when_the_draft_is_rejected(support: Any) -> None:
    client, headers, calls, _helpscout = support
    ticket = {"ticket_id": "12248", "require_approval": True}
    run = await trigger_run(client, headers, "customer_support", ticket)
    await _listed(client, headers, run["workflow_id"])
    await _decide(client, headers, run["workflow_id"], "reject", step="approve",
                  comment="cites the wrong article")  # fmt: skip
    done = await finished_run(client, headers, run["workflow_id"], timeout=60)
    assert done["status"] == "failed"
    assert steps_of(done)["approve"]["error"]["message"] == "cites the wrong article"
    assert _replies(calls) == []
