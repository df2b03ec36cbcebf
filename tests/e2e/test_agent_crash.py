"""An `llm.agent` step whose worker is SIGKILLed between two tool calls resumes from its
journal: the tool call it finished is not made again, the model turn it recorded is not asked
again, and the run completes.

An API server (serving the demo MCP services, no worker of its own) and a `workflow-engine
worker` process on PostgreSQL; the model is a local server shaped like OpenAI's API that
scripts the agent's turns and holds the second turn's answer, so that the worker is killed
while the first tool call is recorded and the second is not yet asked for.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.fakes.openai_server import Reply, fake_openai

pytestmark = pytest.mark.e2e

FLOW = """
name: agent_crash
steps:
  - id: agent
    uses: llm.agent
    retry: {max_attempts: 3, initial_delay: 0.1}
    with:
      provider: openai
      prompt: What should we tell the customer of ticket 12345?
      tools: [notion.search_pages, helpscout.get_conversation]
output: "{{ steps.agent.output }}"
"""
ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Agent-Crash-Dummy-2026"}  # fmt: skip


def test_a_killed_agent_repeats_no_finished_tool_call(
    server_factory: type[Server], fresh_postgres_url: str, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "agent_crash.yaml").write_text(FLOW)
    with fake_openai() as model:
        model.reply(
            Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "order"}}]),
            Reply("never delivered", delay=60),  # the worker dies waiting for this turn
            Reply(tool_calls=[{"name": "helpscout__get_conversation",
                               "arguments": {"conversation_id": "12345"}}]),
            Reply("Your order ships today; see the shipping article."),
        )  # fmt: skip
        env = {
            "DATABASE_URL": fresh_postgres_url, "WORKFLOWS_DIR": str(flows),
            "WORKER_LEASE_SECONDS": "2", "LLM_BASE_URL": model.url, "LLM_API_KEY": "sk-test",
            "LLM_TIMEOUT_SECONDS": "120", "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "10000", **ADMIN,
        }  # fmt: skip
        api = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
        demo = f"{api.url}/demo/mcp"
        worker_env = {**env, **{f"{name.upper()}_MCP_URL": f"{demo}/{name}/"
                                for name in ("helpscout", "notion", "slack")}}  # fmt: skip
        worker = server_factory("worker", env=worker_env).start(wait=False)

        token = httpx.post(f"{api.url}/api/v1/auth/login", timeout=10, json={
            "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
        }).json()["token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            run_id = client.post(
                "/api/v1/workflows/trigger", json={"workflow_name": "agent_crash"}
            ).json()["workflow_id"]
            _until(lambda: len(model.requests) == 2, "the agent's second turn")
            assert [c["tool"] for c in _calls(tmp_path, "notion")] == ["search_pages"]
            assert worker.process is not None
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(10)
            server_factory("worker", env=worker_env).start(wait=False)

            _until(lambda: _status(client, run_id)["status"] in ("completed", "failed"), "the run")
            status = _status(client, run_id)
            results = client.get(f"/api/v1/workflows/{run_id}/results").json()
            assert status["status"] == "completed", (status, results)
            output = results["output"]

    assert len(_calls(tmp_path, "notion")) == 1  # finished before the kill: not made again
    assert [c["tool"] for c in _calls(tmp_path, "helpscout")] == ["get_conversation"]
    # Turn 1 was recorded, so the new worker asked only for turns 2 and 3.
    assert len(model.requests) == 4
    assert output["text"] == "Your order ships today; see the shipping article."
    assert [(c["server"], c["tool"]) for c in output["tool_calls"]] == [
        ("notion", "search_pages"),
        ("helpscout", "get_conversation"),
    ]
    assert output["usage"]["total_tokens"] == 3 * 18  # the three answered turns


def _calls(tmp_path: Path, server: str) -> list[dict[str, Any]]:
    log = tmp_path / "data" / "demo" / f"{server}.calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _status(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/workflows/{run_id}/status").json())


def _until(done: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)
