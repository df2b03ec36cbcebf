"""The `anthropic` provider against a local server shaped like Anthropic's Messages API:
`llm.*` steps through the API, usage counted exactly, 429 and 529/5xx retried, refused
credentials failing at once, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic, Reply, fake_anthropic
from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role

QUICK_RETRY = {"max_attempts": 2, "initial_delay": 0.05, "jitter": 0}
WORKFLOWS = [
    {"name": "ask", "steps": [{"id": "llm", "uses": "llm.chat", "with": {
        "prompt": "{{ input.prompt }}", "system": "You answer briefly.", "max_tokens": 200}}],
     "output": "{{ steps.llm.output }}"},
    {"name": "ask_retrying", "steps": [{"id": "llm", "uses": "llm.chat", "retry": QUICK_RETRY,
                                        "with": {"prompt": "hello"}}],
     "output": "{{ steps.llm.output }}"},
    {"name": "sort", "steps": [{"id": "llm", "uses": "llm.classify", "with": {
        "text": "{{ input.text }}", "labels": ["billing", "bug"]}}],
     "output": "{{ steps.llm.output }}"},
    {"name": "ask_offline", "steps": [{"id": "llm", "uses": "llm.chat", "retry": QUICK_RETRY,
                                      "with": {"prompt": "hi", "provider": "offline"}}],
     "output": "{{ steps.llm.output }}"},
]  # fmt: skip


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with fake_anthropic() as fake:
        yield fake


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, anthropic: FakeAnthropic
) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    anthropic.reset()
    # No LLM_PROVIDER: the Anthropic key alone makes `anthropic` the default.
    app = build_app(
        database_url, tmp_path, workflows=WORKFLOWS,
        ANTHROPIC_BASE_URL=anthropic.url, ANTHROPIC_API_KEY="sk-ant-test",
        LLM_TIMEOUT_SECONDS="0.5", LLM_MAX_RETRIES="1",
    )  # fmt: skip
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _run(api: Any, name: str, data: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    client, headers = api
    run = await trigger_run(client, headers, name, data or {})
    status = await finished_run(client, headers, run["workflow_id"])
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    return status, results


async def test_a_chat_step_sends_a_messages_request_and_counts_its_usage(
    api: Any, anthropic: FakeAnthropic
) -> None:
    anthropic.reply(Reply("It ships today.", prompt_tokens=31, completion_tokens=6,
                          model="claude-haiku-4-5-20251001"))  # fmt: skip
    status, results = await _run(api, "ask", {"prompt": "Where is my order?"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["text"] == "It ships today."
    assert (output["provider"], output["model"]) == ("anthropic", "claude-haiku-4-5-20251001")
    assert output["usage"] == {"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37}
    [sent] = anthropic.requests
    assert sent == {
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "system": "You answer briefly.",
        "messages": [{"role": "user", "content": "Where is my order?"}],
    }
    assert anthropic.authorizations == ["sk-ant-test"]
    assert anthropic.versions == ["2023-06-01"]
    assert status["llm_usage"]["total_tokens"] == 37


async def test_a_429_waits_what_it_asks_then_succeeds(api: Any, anthropic: FakeAnthropic) -> None:
    anthropic.reply(Reply(status=429, headers={"retry-after": "0.3"}), Reply("fine now"))
    status, results = await _run(api, "ask_retrying")

    assert status["status"] == "completed", status
    assert steps_of(status)["llm"]["attempts"] == 1  # the provider retried, not the step
    assert results["output"]["usage"]["total_tokens"] == 18  # the answered call only
    assert anthropic.request_times[1] - anthropic.request_times[0] >= 0.28


@pytest.mark.parametrize("status_code", [529, 500])
async def test_overloaded_and_5xx_answers_are_retried(
    api: Any, anthropic: FakeAnthropic, status_code: int
) -> None:
    anthropic.reply(Reply(status=status_code), Reply("recovered"))
    status, results = await _run(api, "ask_retrying")

    assert status["status"] == "completed", status
    assert results["output"]["text"] == "recovered"
    assert len(anthropic.requests) == 2


async def test_an_overload_that_lasts_fails_the_step_as_retryable(
    api: Any, anthropic: FakeAnthropic
) -> None:
    anthropic.reply(*[Reply(status=529)] * 4)
    status, _ = await _run(api, "ask_retrying")

    step = steps_of(status)["llm"]
    assert (status["status"], step["attempts"]) == ("failed", 2)
    assert step["error"]["class"] == "llm_unavailable"
    assert "(529): scripted 529" in step["error"]["message"]
    assert len(anthropic.requests) == 4


async def test_refused_credentials_fail_at_once(api: Any, anthropic: FakeAnthropic) -> None:
    anthropic.reply(Reply(status=401))
    status, _ = await _run(api, "ask_retrying")

    step = steps_of(status)["llm"]
    assert (status["status"], step["attempts"]) == ("failed", 1)
    assert step["error"]["class"] == "llm_auth"
    assert "refused the credentials (401): scripted 401" in step["error"]["message"]
    assert len(anthropic.requests) == 1


async def test_classification_asks_for_json_in_the_system_text(
    api: Any, anthropic: FakeAnthropic
) -> None:
    anthropic.reply(Reply('{"label": "billing", "confidence": 0.9}'))
    status, results = await _run(api, "sort", {"text": "I was charged twice"})

    assert status["status"] == "completed", status
    assert (results["output"]["label"], results["output"]["confidence"]) == ("billing", 0.9)
    [sent] = anthropic.requests
    assert "Answer with one JSON object only" in sent["system"]
    assert [m["role"] for m in sent["messages"]] == ["user"]


async def test_a_step_may_name_another_provider(api: Any, anthropic: FakeAnthropic) -> None:
    status, results = await _run(api, "ask_offline")

    assert status["status"] == "completed", status
    assert results["output"]["provider"] == "offline"
    assert anthropic.requests == []
