"""The seed's "Trigger a Workflow" example, verbatim, against a real server on the embedded
default: demo MCP services mounted in the server, the offline LLM provider."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.e2e.conftest import Server, clean_environment

pytestmark = pytest.mark.e2e

SEED_LOGIN = '{"email": "user@example.com", "password": "password"}'
SEED_TRIGGER = """{
    "workflow_name": "customer_support",
    "data": {
      "ticket_id": "12345",
      "customer_message": "I need help with my order"
    }
  }"""
INTENTS = {"order", "billing", "refund", "bug", "how_to", "spam", "other"}


def _demo_tool(base: str, server: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Call a tool of a demo service mounted in the server, over MCP."""

    async def call() -> Any:
        async with Client(f"{base}/demo/mcp/{server}/") as client:
            result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content
        return result.structured_content

    return asyncio.run(call())


def test_the_seeds_customer_support_example_runs_offline(
    server_factory: type[Server], installed_bin: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = server_factory().start()  # on first start: tenant `default` and its admin
    # The README's way to get the seed's user (the password policy refuses "password").
    created = subprocess.run(
        [str(installed_bin / "workflow-engine"), "users", "create", "--email",
         "user@example.com", "--role", "operator", "--password-stdin",
         "--allow-weak-password"],
        input="password\n", capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=dict(clean_environment(), DATA_DIR=str(data_dir)),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    json_headers = {"Content-Type": "application/json"}

    login = httpx.post(f"{server.url}/api/v1/auth/login", content=SEED_LOGIN,
                       headers=json_headers)  # fmt: skip
    assert login.status_code == 200, login.text
    headers = {**json_headers, "Authorization": f"Bearer {login.json()['token']}"}
    trigger = httpx.post(f"{server.url}/api/v1/workflows/trigger", content=SEED_TRIGGER,
                         headers=headers)  # fmt: skip
    assert trigger.status_code == 202, trigger.text
    run = trigger.json()

    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{server.url}{run['links']['status']}", headers=headers).json()
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    results = httpx.get(f"{server.url}{run['links']['results']}", headers=headers).json()

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["intent"] in INTENTS
    assert output["intent"] == "order"
    assert output["llm"]["provider"] == "offline"
    assert output["cited_articles"]
    for article in output["cited_articles"]:  # each exists in the demo knowledge base
        page = _demo_tool(server.url, "notion", "get_page", {"page_id": article})
        assert page["id"] == article
    [action] = output["actions"]
    conversation = _demo_tool(server.url, "helpscout", "get_conversation",
                              {"conversation_id": "12345"})  # fmt: skip
    [draft] = [t for t in conversation["threads"] if t["id"] == action["thread_id"]]
    assert draft["draft"] is True
    assert output["reply"] in draft["body"]
    assert conversation["demo"] is True
