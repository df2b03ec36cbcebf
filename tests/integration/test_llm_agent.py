"""`llm.agent` against the demo MCP servers (real MCP over HTTP): offline, and with a local
server shaped like OpenAI's chat-completions API scripting the model's tool calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic
from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai
from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    run_events,
    running,
    steps_of,
    trigger_run,
)
from tests.integration.test_mcp_workflows import demo  # noqa: F401  (a fixture)
from workflow_engine.auth.permissions import Role

QUESTION = "What should we tell the customer of ticket 12345 about their order?"


def _agent(name: str, tools: list[str], **arguments: Any) -> dict[str, Any]:
    retry = {"max_attempts": 2, "initial_delay": 0.05, "jitter": 0}
    step = {"id": "agent", "uses": "llm.agent", "retry": retry,
            "with": {"prompt": "{{ input.question }}", "tools": tools, **arguments}}  # fmt: skip
    return {"name": name, "steps": [step], "output": "{{ steps.agent.output }}"}


WORKFLOWS = [
    _agent("offline_agent", ["helpscout.get_conversation", "notion.search_pages"]),
    _agent("scripted_agent", ["notion.search_pages", "helpscout.*"], provider="openai"),
    _agent("short_agent", ["notion.search_pages"], provider="openai", max_turns=2),
    _agent("misnamed_agent", ["notion.search_page"]),
    _agent("claude_agent", ["notion.search_pages"], provider="anthropic"),
]


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with fake_anthropic() as fake:
        yield fake


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, demo: dict[str, str],  # noqa: F811
    openai: FakeOpenAI, anthropic: FakeAnthropic,
) -> AsyncIterator[tuple[Any, dict[str, str]]]:  # fmt: skip
    openai.reset()
    anthropic.reset()
    app = build_app(
        database_url, tmp_path, workflows=WORKFLOWS,
        HELPSCOUT_MCP_URL=demo["helpscout"], NOTION_MCP_URL=demo["notion"],
        SLACK_MCP_URL=demo["slack"], LLM_PROVIDER="offline", LLM_BASE_URL=openai.url,
        LLM_API_KEY="sk-test-key", LLM_MODEL="fake-model-1", LLM_MAX_RETRIES="1",
        ANTHROPIC_BASE_URL=anthropic.url, ANTHROPIC_API_KEY="sk-ant-test",
    )  # fmt: skip
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


def _calls(tmp_path: Path, server: str) -> list[dict[str, Any]]:
    """The demo server's call log: one entry per tool call it served."""
    log = tmp_path / "demo-data" / "demo" / f"{server}.calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _run(api: Any, name: str, question: str = QUESTION) -> tuple[dict[str, Any], Any]:
    client, headers = api
    run = await trigger_run(client, headers, name, {"question": question})
    status = await finished_run(client, headers, run["workflow_id"], timeout=60)
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    return status, results


async def test_the_offline_agent_answers_from_notion_and_helpscout(
    api: Any, tmp_path: Path
) -> None:
    status, results = await _run(api, "offline_agent")

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["provider"] == "offline"
    assert output["turns"] == 2  # the tool calls, then the answer
    assert output["text"]
    called = {(c["server"], c["tool"]): c for c in output["tool_calls"]}
    assert set(called) == {("helpscout", "get_conversation"), ("notion", "search_pages")}
    assert called["helpscout", "get_conversation"]["arguments"] == {"conversation_id": "12345"}
    assert all(c["ok"] for c in output["tool_calls"])
    assert called["helpscout", "get_conversation"]["data"]["id"] == "12345"
    # The servers saw the calls.
    assert [c["tool"] for c in _calls(tmp_path, "helpscout")] == ["get_conversation"]
    assert _calls(tmp_path, "helpscout")[0]["arguments"] == {"conversation_id": "12345"}
    assert [c["tool"] for c in _calls(tmp_path, "notion")] == ["search_pages"]
    # Each model turn and each tool call is in the run's log of events as it completed.
    client, headers = api
    recorded = [e["data"]["entry"] for e in await run_events(client, headers, status["workflow_id"])
                if e["event_type"] == "StepRecorded"]  # fmt: skip
    assert [(e["kind"], e["turn"]) for e in recorded] == [
        ("turn", 1),
        ("tool", 1),
        ("tool", 1),
        ("turn", 2),
    ]


async def test_a_tool_outside_the_allow_list_is_refused(
    api: Any, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.reply(
        Reply(tool_calls=[{"name": "slack__post_message",
                           "arguments": {"channel": "general", "text": "hello"}}]),
        Reply("I may not post to Slack; here is the answer."),
    )  # fmt: skip
    status, results = await _run(api, "scripted_agent")

    assert status["status"] == "completed", status
    [refused] = results["output"]["tool_calls"]
    assert refused["refused"] is True
    assert refused["ok"] is False
    assert "not allowed" in refused["error"]
    assert _calls(tmp_path, "slack") == []  # never called
    # The model was told, and was offered only the allowed tools.
    offered = {t["function"]["name"] for t in openai.requests[0]["tools"]}
    assert "notion__search_pages" in offered
    assert "helpscout__get_conversation" in offered
    assert not any(name.startswith("slack") for name in offered)
    told = [m for m in openai.requests[1]["messages"] if m["role"] == "tool"]
    assert told[0]["tool_call_id"] == "call_1_0"
    assert "not allowed" in told[0]["content"]


async def test_arguments_are_checked_against_the_tools_schema(
    api: Any, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.reply(
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"limit": "many"}}]),
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": "{not json"}]),
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "refund"}}]),
        Reply("Refunds take five days."),
    )
    status, results = await _run(api, "scripted_agent")

    assert status["status"] == "completed", status
    first, second, third = results["output"]["tool_calls"]
    assert not first["ok"]
    assert "query" in first["error"]
    assert not second["ok"]
    assert "JSON object" in second["error"]
    assert third["ok"]
    assert third["data"]["results"]
    # Only the valid call reached the server.
    assert [c["arguments"]["query"] for c in _calls(tmp_path, "notion")] == ["refund"]
    assert results["output"]["usage"]["total_tokens"] == 4 * 18  # every turn counted


async def test_a_failed_attempt_resumes_without_repeating_finished_calls(
    api: Any, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.reply(
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "refund"}}]),
        Reply(status=500),
        Reply(status=500),  # the provider's retry, then the step's
        Reply("Refunds take five days."),
    )
    status, results = await _run(api, "scripted_agent")

    assert status["status"] == "completed", status
    assert steps_of(status)["agent"]["attempts"] == 2
    assert len(_calls(tmp_path, "notion")) == 1  # the finished tool call was not made again
    assert len(openai.requests) == 4  # nor was the recorded first turn asked again
    assert [m["role"] for m in openai.requests[3]["messages"]] == ["user", "assistant", "tool"]
    assert results["output"]["turns"] == 2
    assert results["output"]["usage"]["total_tokens"] == 2 * 18


async def test_the_agent_fails_when_it_runs_out_of_turns(api: Any, openai: FakeOpenAI) -> None:
    ask = Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "x"}}])
    openai.reply(ask, ask)
    status, _ = await _run(api, "short_agent")

    assert status["status"] == "failed"
    error = steps_of(status)["agent"]["error"]
    assert error["class"] == "agent_limit"
    assert "max_turns (2)" in error["message"]
    assert steps_of(status)["agent"]["attempts"] == 1  # a limit is not retried


async def test_a_run_retried_after_the_limit_goes_on_without_repeating_anything(
    api: Any, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.reply(
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "refund"}}]),
        Reply(tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "return"}}]),
        Reply("Refunds take five days."),
    )
    client, headers = api
    run = await trigger_run(client, headers, "short_agent", {"question": QUESTION})
    failed = await finished_run(client, headers, run["workflow_id"], timeout=60)
    assert failed["status"] == "failed"
    assert steps_of(failed)["agent"]["error"]["class"] == "agent_limit"

    retried = await client.post(run["links"]["retry"], headers=headers)
    assert retried.status_code == 202, retried.text
    status = await finished_run(client, headers, run["workflow_id"], timeout=60)
    results = (await client.get(run["links"]["results"], headers=headers)).json()

    assert status["status"] == "completed", status
    assert results["output"]["text"] == "Refunds take five days."
    assert results["output"]["turns"] == 3  # two replayed from the journal, one new
    assert len(openai.requests) == 3  # no turn asked twice
    assert [c["arguments"]["query"] for c in _calls(tmp_path, "notion")] == ["refund", "return"]


async def test_a_tool_its_server_does_not_have_fails_the_step(api: Any) -> None:
    status, _ = await _run(api, "misnamed_agent")

    assert status["status"] == "failed"
    error = steps_of(status)["agent"]["error"]
    assert "notion has no tool 'search_page'" in error["message"]
    assert "search_pages" in error["message"]


async def test_the_agent_speaks_anthropics_tool_blocks(
    api: Any, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    anthropic.reply(
        Reply("Let me look.", tool_calls=[{"name": "notion__search_pages",
                                           "arguments": {"query": "refund"}}]),
        Reply("Refunds take five days.", prompt_tokens=40, completion_tokens=6),
    )  # fmt: skip
    status, results = await _run(api, "claude_agent")

    assert status["status"] == "completed", status
    output = results["output"]
    assert (output["text"], output["provider"]) == ("Refunds take five days.", "anthropic")
    assert output["usage"]["total_tokens"] == 18 + 46
    assert [c["arguments"]["query"] for c in _calls(tmp_path, "notion")] == ["refund"]
    first, second = anthropic.requests
    assert first["tools"][0]["name"] == "notion__search_pages"
    assert first["tools"][0]["input_schema"]["required"] == ["query"]
    assistant, results_turn = second["messages"][1:]
    assert assistant["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1_0", "name": "notion__search_pages",
         "input": {"query": "refund"}},
    ]  # fmt: skip
    [result] = results_turn["content"]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "toolu_1_0")
    assert "refund" in result["content"].lower()


async def test_the_support_agent_template_answers_its_example(api: Any, tmp_path: Path) -> None:
    client, headers = api
    template = await client.get("/api/v1/workflows/templates/support_agent", headers=headers)
    example = template.json()["example_input"]
    run = await trigger_run(client, headers, "support_agent", example)
    status = await finished_run(client, headers, run["workflow_id"], timeout=60)
    results = (await client.get(run["links"]["results"], headers=headers)).json()

    assert status["status"] == "completed", status
    output = results["output"]
    assert {"get_conversation", "search_pages"} <= set(output["tool_calls"])
    # Drawn from what the tools returned (the ticket's own words), not from the instructions.
    assert "order" in output["answer"].lower()
    assert "help articles" not in output["answer"]
    assert output["llm"]["provider"] == "offline"
    assert "get_conversation" in [c["tool"] for c in _calls(tmp_path, "helpscout")]
