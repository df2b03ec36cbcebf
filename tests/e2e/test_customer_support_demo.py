"""The seed's "Trigger a Workflow" example, verbatim, against a real server on the embedded
default: demo MCP services mounted in the server, the offline LLM provider. The README's first
workflow shows these very commands (the block marked `customer-support-demo`)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.e2e.conftest import ROOT, Server, clean_environment, documented_block

pytestmark = pytest.mark.e2e

# The README's way to get the seed's user (the password policy refuses "password").
USERS_CREATE = ["users", "create", "--email", "user@example.com", "--role", "operator",
                "--password-stdin", "--allow-weak-password"]  # fmt: skip
SEED_LOGIN = '{"email": "user@example.com", "password": "password"}'
SEED_TRIGGER = """{
    "workflow_name": "customer_support",
    "data": {
      "ticket_id": "12345",
      "customer_message": "I need help with my order"
    }
  }"""
INTENTS = {"order", "billing", "refund", "bug", "how_to", "spam", "other"}


def _readme_run_paths(workflow_id: str) -> dict[str, str]:
    """The paths of the README's status and results commands, with the run's id filled in."""
    readme = (ROOT / "README.md").read_text()
    found = re.findall(r'"http://localhost:8080(/api/v1/workflows/\{workflow_id\}/(\w+))"', readme)
    return {kind: path.replace("{workflow_id}", workflow_id) for path, kind in found}


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
    created = subprocess.run(
        [str(installed_bin / "workflow-engine"), *USERS_CREATE], input="password\n",
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
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
    paths = _readme_run_paths(run["workflow_id"])
    assert paths == {"status": run["links"]["status"], "results": run["links"]["results"]}

    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{server.url}{paths['status']}", headers=headers).json()
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    results = httpx.get(f"{server.url}{paths['results']}", headers=headers).json()

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


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    block = documented_block("customer-support-demo", "bash")
    one_line = " ".join(block.replace("\\\n", " ").split())
    assert f"printf 'password\\n' | .venv/bin/workflow-engine {' '.join(USERS_CREATE)}" in one_line
    assert f"-d '{SEED_LOGIN}' | jq -r '.token')" in block
    assert f"-d '{SEED_TRIGGER}'" in block
