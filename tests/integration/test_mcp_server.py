"""The engine as an MCP server at /mcp: the official MCP client, over streamable HTTP, against
the app served by uvicorn on a local port (its own demo services and the offline LLM)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role

REVIEWED = {
    "name": "reviewed",
    "description": "Drafts a text, waits for a person to approve it, sends it.",
    "input_schema": {"type": "object", "required": ["text"],
                     "properties": {"text": {"type": "string", "minLength": 1}}},
    "steps": [
        {"id": "draft", "uses": "transform", "with": {"text": "{{ input.text }}"}},
        {"id": "review", "uses": "approval", "needs": ["draft"],
         "with": {"proposal": "{{ steps.draft.output }}"}},
        {"id": "send", "uses": "transform", "needs": ["review"],
         "with": {"sent": "{{ steps.review.output.data.text }}"}},
    ],
    "output": {"sent": "{{ steps.send.output.sent }}"},
}  # fmt: skip
READ_TOOLS = {"list_workflows", "get_run_status", "get_run_results", "get_run_logs",
              "list_approvals"}  # fmt: skip
RUN_TOOLS = {"run_customer_support", "run_knowledge_base", "run_order_summary",
             "run_support_agent", "run_reviewed", "cancel_run", "approve_step"}  # fmt: skip
ORDER = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test's process keeps its own handlers
        yield


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient
    accounts: Accounts
    tenant: str
    admin: dict[str, str]

    async def api_key(self, role: Role, tenant: str | None = None) -> str:
        admin = self.admin
        if tenant is not None:
            admin = {"Authorization": f"Bearer {await self.accounts.token(Role.admin, tenant)}"}
        made = await self.http.post(
            "/api/v1/auth/api-keys", headers=admin, json={"name": f"agent-{role}", "role": role}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """The app served on a local port: its demo services answer there, for its own runs."""
    port = _free_port()
    app = build_app(
        database_url, tmp_path, workflows=[REVIEWED], HOST="127.0.0.1", PORT=str(port),
        LLM_PROVIDER="offline", MCP_TOOL_WAIT_SECONDS="60",
    )  # fmt: skip
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        accounts = Accounts(app, http)
        tenant = await accounts.tenant()
        admin = {"Authorization": f"Bearer {await accounts.token(Role.admin, tenant)}"}
        yield Served(url, http, accounts, tenant, admin)
    server.should_exit = True
    await serving


@asynccontextmanager
async def agent(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """The official MCP client with the agent's credential on every request."""
    timeout = httpx2.Timeout(30, read=120)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def _refusal(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_an_agent_runs_customer_support_through_its_tool(served: Served) -> None:
    template = (
        await served.http.get("/api/v1/workflows/templates/customer_support", headers=served.admin)
    ).json()
    key = await served.api_key(Role.operator)
    progress: list[tuple[float, float | None]] = []

    async def reported(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))

    async with agent(served.url, _bearer(key)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) >= READ_TOOLS | RUN_TOOLS
        assert tools["run_customer_support"].input_schema == template["input_schema"]

        result = await client.call_tool(
            "run_customer_support", template["example_input"], progress_callback=reported
        )
        assert not result.is_error, result.content
        run = result.structured_content
        assert run is not None
        assert (run["workflow_name"], run["status"]) == ("customer_support", "completed"), run
        assert run["output"]["intent"] == "order"
        assert run["output"]["actions"][0]["action"] == "reply_drafted"
        done = [count for count, _ in progress]
        assert done == sorted(done)  # progress never goes back

        status = await _call(client, "get_run_status", {"run_id": run["workflow_id"]})
        assert status["status"] == "completed"
        assert {step["status"] for step in status["steps"]} <= {"completed", "skipped"}
        results = await _call(client, "get_run_results", {"run_id": run["workflow_id"]})
        assert results["output"] == run["output"]
        logs = await _call(client, "get_run_logs", {"run_id": run["workflow_id"], "limit": 2})
        assert len(logs["items"]) == 2
        assert logs["next_after"] == logs["items"][-1]["id"]

        listed = await _call(client, "list_workflows", {})
        assert "customer_support" in {item["name"] for item in listed["items"]}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "workflow://templates/customer_support" in resources
        read = await client.read_resource("workflow://templates/customer_support")
        assert json.loads(read.contents[0].text)["input_schema"] == template["input_schema"]  # type: ignore[union-attr]
        read = await client.read_resource(f"workflow://runs/{run['workflow_id']}")
        assert json.loads(read.contents[0].text)["status"] == "completed"  # type: ignore[union-attr]


async def test_a_long_run_reports_progress_while_its_tool_waits(served: Served) -> None:
    """The tool waits on the run, reporting its steps as they complete; a person approves the
    step it waits at (through approve_step, from another agent), and the tool answers."""
    progress: list[tuple[float, float | None]] = []
    reached_review = asyncio.Event()

    async def reported(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))
        if done >= 1:
            reached_review.set()

    operator = _bearer(await served.api_key(Role.operator))
    async with agent(served.url, operator) as runner, agent(served.url, operator) as approver:
        call = asyncio.create_task(runner.call_tool(
            "run_reviewed", {"text": "Hello Ada"}, progress_callback=reported
        ))  # fmt: skip
        await reached_review.wait()
        async with asyncio.timeout(30):  # the review step begins after the draft's report
            while True:
                waiting = await _call(approver, "list_approvals", {})
                if waiting["items"]:
                    break
                await asyncio.sleep(0.05)
        [approval] = waiting["items"]
        decided = await _call(approver, "approve_step", {
            "run_id": approval["workflow_id"], "step": "review", "comment": "fine",
            "data": {"text": "Hello Ada, edited"},
        })  # fmt: skip
        assert decided["decision"] == "approved"
        result = await call

    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    assert result.structured_content["output"] == {"sent": "Hello Ada, edited"}
    assert {total for _, total in progress} == {3}
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})  # rising
    assert progress[-1][0] >= 1  # the draft, reported while the run waited for its review


async def test_a_viewers_agent_reads_but_cannot_trigger_cancel_or_approve(served: Served) -> None:
    viewer = {"X-API-Key": await served.api_key(Role.viewer)}
    async with agent(served.url, _bearer(await served.api_key(Role.operator))) as operator:
        started = await _call(operator, "run_order_summary", ORDER)
    async with agent(served.url, viewer) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == READ_TOOLS  # what it may not call is not offered

        refused = await _refusal(client, "run_customer_support", {"ticket_id": "12345"})
        assert "Forbidden" in refused
        assert "workflows:run" in refused
        assert "workflows:run" in await _refusal(
            client, "cancel_run", {"run_id": started["workflow_id"]}
        )
        assert "workflows:approve" in await _refusal(
            client, "approve_step", {"run_id": started["workflow_id"], "step": "review"}
        )
        status = await _call(client, "get_run_status", {"run_id": started["workflow_id"]})
        assert status["status"] == "completed"
    runs = (await served.http.get("/api/v1/workflows", headers=served.admin)).json()["items"]
    assert [run["workflow_name"] for run in runs] == ["order_summary"]  # the viewer ran nothing


async def test_another_tenants_run_is_not_found(served: Served) -> None:
    async with agent(served.url, _bearer(await served.api_key(Role.operator))) as ours:
        run = await _call(ours, "run_order_summary", ORDER)
    assert run["status"] == "completed"
    other = await served.accounts.tenant()
    theirs = _bearer(await served.api_key(Role.admin, other))
    async with agent(served.url, theirs) as client:
        for tool in ("get_run_status", "get_run_results", "get_run_logs", "cancel_run"):
            refused = await _refusal(client, tool, {"run_id": run["workflow_id"]})
            assert "Not Found" in refused, (tool, refused)
        with pytest.raises(MCPError) as raised:
            await client.read_resource(f"workflow://runs/{run['workflow_id']}")
        assert "Not Found" in raised.value.error.message


async def test_input_errors_name_the_field(served: Served) -> None:
    async with agent(served.url, _bearer(await served.api_key(Role.operator))) as client:
        refused = await _refusal(client, "run_order_summary", {"customer": "Ada"})
        assert "Invalid input" in refused
        assert "items" in refused
        refused = await _refusal(client, "get_run_status", {"run_id": "not-a-uuid"})
        assert "run_id" in refused
        unknown = "00000000-0000-4000-8000-000000000000"
        assert "Not Found" in await _refusal(client, "get_run_results", {"run_id": unknown})
        assert "TRIGGER_WAIT_MAX_SECONDS" in await _refusal(
            client, "get_run_results", {"run_id": unknown, "wait_seconds": 10_000}
        )


async def test_without_a_valid_credential_the_endpoint_answers_401(served: Served) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers in ({}, {"Authorization": "Bearer wek_not_a_key"}, {"X-API-Key": "nope"}):
        answer = await served.http.post("/mcp", json=initialize, headers={**accept, **headers})
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["title"] == "Unauthorized"
    with pytest.raises(BaseExceptionGroup):
        async with agent(served.url, {}) as client:
            await client.list_tools()


async def test_the_rate_limit_applies_to_mcp_requests(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, RATE_LIMIT_PER_MINUTE="1", RATE_LIMIT_BURST="1")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {**_bearer(token), "Accept": "application/json, text/event-stream"}
        first = await client.post("/mcp", json=ping, headers=headers)
        assert first.status_code != 429
        second = await client.post("/mcp", json=ping, headers=headers)
    assert second.status_code == 429
    assert second.headers["content-type"] == "application/problem+json"
    assert int(second.headers["retry-after"]) >= 1


async def test_the_endpoint_can_be_turned_off(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, MCP_SERVER_ENABLED="false")
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        answer = await client.post("/mcp", json={}, headers=_bearer(token))
    assert answer.status_code == 404
