"""MCP steps against the demo HelpScout, Notion and Slack servers (real MCP over HTTP, served
on local ports), the shipped support templates on the offline provider, and servers that
are down or hang."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp import Client

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    scrape,
    steps_of,
    trigger_run,
    value,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.demo.services import PORTS, security, serve_standalone, servers
from workflow_engine.integrations.mcp import MCPCallError, MCPClients, MCPServerConfig
from workflow_engine.integrations.mcp.client import FAILURES_TO_OPEN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The demo servers on free local ports; their URLs by name."""
    ports = {name: _free_port() for name in PORTS}
    serving = asyncio.create_task(serve_standalone(tmp_path / "demo-data", "127.0.0.1", ports))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for port in ports.values():
        await _listening(port)
    yield urls
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


@pytest.fixture
async def hanging_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, demo: dict[str, str], hanging_port: int
) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    extra = {
        "down": {"url": f"http://127.0.0.1:{_free_port()}", "timeout_seconds": 1},
        "stuck": {"url": f"http://127.0.0.1:{hanging_port}", "timeout_seconds": 0.5},
    }
    probe = {"max_attempts": 2, "initial_delay": 0.05, "jitter": 0}
    workflows = [
        {"name": f"call_{name}", "steps": [{"id": "call", "uses": "mcp.call", "retry": probe,
          "with": {"server": name, "tool": "anything"}}]}
        for name in ("down", "stuck")
    ] + [{"name": "unknown_tool", "steps": [{"id": "call", "uses": "mcp.call",
          "with": {"server": "helpscout", "tool": "no_such_tool"}}]}]  # fmt: skip
    app = build_app(
        database_url, tmp_path, workflows=workflows,
        HELPSCOUT_MCP_URL=demo["helpscout"], NOTION_MCP_URL=demo["notion"],
        SLACK_MCP_URL=demo["slack"], MCP_SERVERS=json.dumps(extra), LLM_PROVIDER="offline",
    )  # fmt: skip
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _run(api: Any, name: str, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    client, headers = api
    run = await trigger_run(client, headers, name, data)
    status = await finished_run(client, headers, run["workflow_id"], timeout=60)
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    return status, results


async def _tool(url: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(f"{url}/mcp") as client:
        result = await client.call_tool(tool, arguments)
    return result.structured_content


async def test_the_seeds_example_ticket_gets_a_grounded_draft_reply(
    api: Any, demo: dict[str, str]
) -> None:
    seed_example = {"ticket_id": "12345", "customer_message": "I need help with my order"}
    status, results = await _run(api, "customer_support", seed_example)

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["intent"] == "order"
    assert output["escalated"] is False
    assert output["llm"]["provider"] == "offline"
    articles = await _tool(demo["notion"], "search_pages", {"query": "order", "limit": 20})
    known = {page["id"] for page in articles["results"]}
    assert output["cited_articles"]
    assert set(output["cited_articles"]) <= known
    [action] = output["actions"]
    assert action["action"] == "reply_drafted"
    conversation = await _tool(demo["helpscout"], "get_conversation", {"conversation_id": "12345"})
    drafts = [t for t in conversation["threads"] if t.get("draft")]
    assert drafts[-1]["id"] == action["thread_id"]
    assert output["reply"] in drafts[-1]["body"]
    usage = status["llm_usage"]
    assert usage["calls"] == 4  # intent, urgency, sentiment, draft
    assert [m["provider"] for m in usage["by_model"]] == ["offline"]


async def test_an_angry_refund_demand_is_escalated_to_slack(api: Any, demo: dict[str, str]) -> None:
    status, results = await _run(api, "customer_support", {"ticket_id": "12301"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["intent"] == "refund"
    assert output["escalated"] is True
    assert [a["action"] for a in output["actions"]] == ["escalated_to_slack", "tagged"]
    found = await _tool(demo["slack"], "search_messages", {"query": "Escalation 12301 refund"})
    assert any(m["ts"] == output["actions"][0]["ts"] for m in found["messages"])
    conversation = await _tool(demo["helpscout"], "get_conversation", {"conversation_id": "12301"})
    assert "escalated" in conversation["tags"]
    assert not [t for t in conversation["threads"] if t.get("draft")]  # a person answers it


async def test_spam_is_tagged_and_closed_without_a_reply(api: Any, demo: dict[str, str]) -> None:
    status, results = await _run(api, "customer_support", {"ticket_id": "12199"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert (output["intent"], output["spam"], output["reply"]) == ("spam", True, None)
    assert [a["action"] for a in output["actions"]] == ["closed_as_spam"]
    conversation = await _tool(demo["helpscout"], "get_conversation", {"conversation_id": "12199"})
    assert conversation["status"] == "closed"
    assert "spam" in conversation["tags"]


async def test_a_how_to_question_is_answered_from_the_right_article(api: Any) -> None:
    status, results = await _run(api, "customer_support", {"ticket_id": "12248"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["intent"] == "how_to"
    assert output["cited_articles"][0] == "kb-two-factor"
    assert "authenticat" in output["reply"].lower()
    assert [a["action"] for a in output["actions"]] == ["reply_drafted"]


async def test_a_ticket_not_in_helpscout_is_answered_from_the_message(api: Any) -> None:
    message = "Where is my package? The tracking page has not changed for days."
    status, results = await _run(api, "customer_support",
                                 {"ticket_id": "99999", "customer_message": message})  # fmt: skip

    assert status["status"] == "completed", status
    assert steps_of(status)["fetch"]["status"] == "failed"  # not in the mailbox: carried on
    output = results["output"]
    assert output["intent"] == "order"
    assert "kb-track-order" in output["cited_articles"]
    assert output["actions"] == []  # nothing to reply to in HelpScout


async def test_knowledge_base_answers_with_citations_and_posts(
    api: Any, demo: dict[str, str]
) -> None:
    status, results = await _run(api, "knowledge_base",
                                 {"query": "How long does a refund take?",
                                  "post_to_channel": "support"})  # fmt: skip

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["articles"]
    assert output["posted"] is True
    assert output["answer"]
    found = await _tool(demo["slack"], "search_messages", {"query": "How long does a refund take"})
    assert any(m["text"].startswith("Q: How long does a refund take?") for m in found["messages"])


async def test_a_server_that_is_down_fails_the_step_after_its_retries(api: Any) -> None:
    status, results = await _run(api, "call_down", {})

    step = steps_of(status)["call"]
    assert (status["status"], step["attempts"]) == ("failed", 2)
    assert step["error"]["class"] == "mcp_unavailable"
    assert "down is unreachable" in step["error"]["message"]
    assert results["error"]["step_id"] == "call"


async def test_a_server_that_hangs_times_out_and_the_run_fails(api: Any) -> None:
    status, _ = await _run(api, "call_stuck", {})

    step = steps_of(status)["call"]
    assert (status["status"], step["attempts"]) == ("failed", 2)
    assert step["error"]["class"] == "mcp_timeout"


async def test_a_tool_error_carries_the_servers_message(api: Any) -> None:
    client, _ = api
    before = scrape((await client.get("/metrics")).text)
    status, _ = await _run(api, "unknown_tool", {})
    after = scrape((await client.get("/metrics")).text)

    step = steps_of(status)["call"]
    assert (status["status"], step["attempts"]) == ("failed", 1)
    assert step["error"]["class"] == "mcp_tool_error"
    assert "no_such_tool" in step["error"]["message"]
    # A tool the server does not have is not a label of its own: steps can name anything.
    labels = {"server": "helpscout", "tool": "other", "outcome": "mcp_tool_error"}
    assert (
        value(after, "mcp_calls_total", **labels) - value(before, "mcp_calls_total", **labels) == 1
    )
    assert not [key for key in after if ("tool", "no_such_tool") in key[1]]


async def test_a_server_that_keeps_failing_opens_its_circuit() -> None:
    url = f"http://127.0.0.1:{_free_port()}/mcp"  # nothing listens there
    clients = MCPClients((MCPServerConfig("down", "streamable_http", url, timeout=1),))
    classes = []
    try:
        for _ in range(FAILURES_TO_OPEN + 1):
            with pytest.raises(MCPCallError) as caught:
                await clients.call_tool("down", "anything", {})
            classes.append(caught.value.error_class)
    finally:
        await clients.close()

    assert classes == ["mcp_unavailable"] * FAILURES_TO_OPEN + ["mcp_circuit_open"]


async def test_tools_are_listed_and_cached(demo: dict[str, str]) -> None:
    config = MCPServerConfig("notion", "streamable_http", f"{demo['notion']}/mcp", timeout=5)
    clients = MCPClients((config,))
    try:
        first = await clients.list_tools("notion")
        again = await clients.list_tools("notion")
        found = await clients.call_tool("notion", "get_page", {"page_id": "kb-track-order"})
    finally:
        await clients.close()

    assert {t["name"] for t in first} == {"search_pages", "get_page", "create_page"}
    assert again is first  # from the cache, not the server
    assert found.data["id"] == "kb-track-order"
    assert found.data["demo"] is True


async def test_stdio_and_sse_servers_answer_like_streamable_http_ones(tmp_path: Path) -> None:
    data = str(tmp_path / "stdio-data")
    stdio = MCPServerConfig(
        "helpscout", "stdio", command=sys.executable,
        args=("-m", "workflow_engine", "demo-services", "--stdio", "helpscout"),
        env=(("DATA_DIR", data), ("PATH", os.environ.get("PATH", ""))), timeout=20,
    )  # fmt: skip
    port = _free_port()
    app = servers(tmp_path / "sse-data")["slack"].sse_app(transport_security=security("127.0.0.1"))
    sse_server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.create_task(sse_server.serve())
    await _listening(port)
    sse = MCPServerConfig("slack", "sse", f"http://127.0.0.1:{port}/sse", timeout=5)
    clients = MCPClients((stdio, sse))
    try:
        ticket = await clients.call_tool("helpscout", "get_conversation",
                                         {"conversation_id": "12345"})  # fmt: skip
        channels = await clients.call_tool("slack", "list_channels", {})
    finally:
        await clients.close()
        sse_server.should_exit = True
        await serving

    assert ticket.data["id"] == "12345"
    assert "support-escalations" in {c["name"] for c in channels.data["channels"]}


async def test_the_demo_servers_leave_the_process_signal_handlers_as_found(
    tmp_path: Path,
) -> None:
    # Each uvicorn server used to swap the handlers and put back what it found; stopped in
    # another order, a dead server's handler stayed and the process ignored SIGTERM.
    handlers = (signal.SIGTERM, signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in handlers}
    ports = {name: _free_port() for name in PORTS}
    serving = asyncio.create_task(serve_standalone(tmp_path, "127.0.0.1", ports))
    for port in ports.values():
        await _listening(port)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert {sig: signal.getsignal(sig) for sig in handlers} == before
