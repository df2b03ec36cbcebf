"""LLM steps against a local server shaped like OpenAI's chat-completions API, and offline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai
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

LABELS = ["order", "billing", "refund", "bug", "how_to", "spam"]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order_id"],
}
QUICK_RETRY = {"max_attempts": 2, "initial_delay": 0.05, "jitter": 0}


def _flow(name: str, uses: str, retry: dict[str, Any] | None = None, **arguments: Any) -> Any:
    step: dict[str, Any] = {"id": "llm", "uses": uses, "with": arguments}
    if retry:
        step["retry"] = retry
    return {"name": name, "steps": [step], "output": "{{ steps.llm.output }}"}


WORKFLOWS = [
    _flow("chat", "llm.chat", provider="openai", prompt="{{ input.prompt }}",
          system="You answer briefly."),
    _flow("chat_retrying", "llm.chat", QUICK_RETRY, provider="openai", prompt="hello"),
    _flow("classify", "llm.classify", provider="openai", text="{{ input.text }}", labels=LABELS),
    _flow("extract", "llm.extract", provider="openai", text="{{ input.text }}",
          schema=ORDER_SCHEMA),
    _flow("offline_classify", "llm.classify", text="{{ input.text }}", labels=LABELS),
    _flow("offline_extract", "llm.extract", text="{{ input.text }}", schema=ORDER_SCHEMA),
    _flow("offline_chat", "llm.chat", system="{{ input.articles }}", prompt="{{ input.text }}"),
    _flow("chat_as", "llm.chat", provider="openai", model="{{ input.model }}", prompt="hi"),
    _flow("nowhere", "llm.chat", QUICK_RETRY, provider="telepathy", prompt="hi"),
]  # fmt: skip


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, openai: FakeOpenAI
) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    openai.reset()
    app = build_app(
        database_url, tmp_path, workflows=WORKFLOWS,
        LLM_PROVIDER="offline", LLM_BASE_URL=openai.url, LLM_API_KEY="sk-test-key",
        LLM_MODEL="fake-model-1",
        LLM_TIMEOUT_SECONDS="0.5", LLM_MAX_RETRIES="1",
    )  # fmt: skip
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _run(
    api: Any, name: str, data: Any = None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    client, headers = api
    run = await trigger_run(client, headers, name, data or {})
    status = await finished_run(client, headers, run["workflow_id"])
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    logs = (await client.get(run["links"]["logs"], headers=headers)).json()["items"]
    return status, results, logs


async def test_chat_records_the_providers_usage_exactly(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(Reply("Your order ships today.", prompt_tokens=23, completion_tokens=5))
    status, results, logs = await _run(api, "chat", {"prompt": "Where is my order?"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["text"] == "Your order ships today."
    assert (output["provider"], output["model"]) == ("openai", "fake-model-1")
    assert output["usage"] == {"prompt_tokens": 23, "completion_tokens": 5, "total_tokens": 28}
    [sent] = openai.requests
    assert sent["model"] == "fake-model-1"
    assert sent["messages"] == [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Where is my order?"},
    ]
    assert openai.authorizations == ["Bearer sk-test-key"]
    [logged] = [e for e in logs if e["message"] == "llm call"]
    assert logged["fields"]["usage"]["total_tokens"] == 28
    assert logged["fields"]["provider"] == "openai"
    assert status["llm_usage"]["total_tokens"] == 28
    assert status["llm_usage"]["by_model"] == [{
        "provider": "openai", "model": "fake-model-1", "calls": 1, "prompt_tokens": 23,
        "completion_tokens": 5, "total_tokens": 28,
        "latency_ms": output["latency_ms"],
    }]  # fmt: skip


async def test_a_429_is_retried_after_the_time_it_asks(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(Reply(status=429, headers={"retry-after": "0.3"}), Reply("fine now"))
    status, results, _ = await _run(api, "chat_retrying")

    assert status["status"] == "completed", status
    assert steps_of(status)["llm"]["attempts"] == 1  # the provider retried, not the step
    assert results["output"]["text"] == "fine now"
    assert results["output"]["usage"]["total_tokens"] == 18  # the answered call only
    assert len(openai.requests) == 2
    assert openai.request_times[1] - openai.request_times[0] >= 0.28


async def test_5xx_answers_fail_the_attempt_as_retryable(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(*[Reply(status=500)] * 4)
    status, results, _ = await _run(api, "chat_retrying")

    assert status["status"] == "failed"
    step = steps_of(status)["llm"]
    assert step["attempts"] == 2  # the step's retry policy ran it twice
    assert len(openai.requests) == 4  # each attempt: one call and one provider retry
    assert step["error"]["class"] == "llm_unavailable"
    assert "scripted 500" in step["error"]["message"]
    assert results["error"]["step_id"] == "llm"


async def test_a_hanging_provider_times_out(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(*[Reply(delay=1.5)] * 4)
    status, _, _ = await _run(api, "chat_retrying")

    assert status["status"] == "failed"
    step = steps_of(status)["llm"]
    assert step["error"]["class"] == "llm_timeout"
    assert step["attempts"] == 2


async def test_refused_credentials_fail_at_once(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(Reply(status=401))
    status, _, _ = await _run(api, "chat_retrying")

    step = steps_of(status)["llm"]
    assert (status["status"], step["attempts"]) == ("failed", 1)
    assert step["error"]["class"] == "llm_auth"
    assert len(openai.requests) == 1


async def test_extraction_asks_again_once_when_the_answer_breaks_the_schema(
    api: Any, openai: FakeOpenAI
) -> None:
    openai.reply(
        Reply(json.dumps({"amount": 12.5}), prompt_tokens=40, completion_tokens=6),
        Reply('```json\n{"order_id": "A-1001", "amount": 12.5}\n```', prompt_tokens=60,
              completion_tokens=9),
    )  # fmt: skip
    status, results, _ = await _run(api, "extract", {"text": "Order A-1001 cost $12.50"})

    assert status["status"] == "completed", status
    output = results["output"]
    assert output["data"] == {"order_id": "A-1001", "amount": 12.5}
    assert output["usage"] == {"prompt_tokens": 100, "completion_tokens": 15, "total_tokens": 115}
    assert output["calls"] == 2
    assert status["llm_usage"]["calls"] == 2  # both tries count toward the run's totals
    assert status["llm_usage"]["total_tokens"] == 115
    first, second = openai.requests
    assert first["response_format"] == {"type": "json_object"}
    assert "order_id" in second["messages"][-1]["content"]  # told what was wrong
    assert "required" in second["messages"][-1]["content"]


async def test_extraction_fails_when_both_answers_are_invalid(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(Reply("not json at all"), Reply('{"amount": "twelve"}'))
    status, _, _ = await _run(api, "extract", {"text": "Order A-1001"})

    assert status["status"] == "failed"
    assert steps_of(status)["llm"]["error"]["class"] == "llm_invalid_output"


async def test_classification_keeps_to_the_labels(api: Any, openai: FakeOpenAI) -> None:
    openai.reply(Reply('{"label": "shipping", "confidence": 0.9}'),
                 Reply('{"label": "order", "confidence": 0.8}'))  # fmt: skip
    status, results, _ = await _run(api, "classify", {"text": "Where is my parcel?"})

    assert status["status"] == "completed", status
    assert (results["output"]["label"], results["output"]["confidence"]) == ("order", 0.8)
    assert "order, billing, refund" in openai.requests[1]["messages"][-1]["content"]


async def test_the_offline_provider_answers_without_a_network(api: Any, openai: FakeOpenAI) -> None:
    _, order, _ = await _run(api, "offline_classify", {"text": "I need help with my order"})
    _, spam, _ = await _run(api, "offline_classify",
                            {"text": "WINNER!! Claim your crypto prize, click now"})  # fmt: skip
    _, refund, _ = await _run(api, "offline_classify",
                              {"text": "I want my money back, refund me"})  # fmt: skip
    _, extracted, _ = await _run(api, "offline_extract",
                                 {"text": "My order #48213 was charged 59.90 twice"})  # fmt: skip
    articles = (
        "Orders ship within two business days of purchase. "
        "You can track an order from the Orders page using its tracking link. "
        "Refunds go back to the original card within five days."
    )
    question = {"articles": articles, "text": "How do I track my order?"}
    _, drafted, _ = await _run(api, "offline_chat", question)

    assert [r["output"]["label"] for r in (order, spam, refund)] == ["order", "spam", "refund"]
    assert order["output"]["provider"] == "offline"
    assert order["output"]["usage"]["total_tokens"] > 0
    assert extracted["output"]["data"] == {"order_id": "48213", "amount": 59.9}
    assert "track an order from the Orders page" in drafted["output"]["text"]
    assert "Refunds" not in drafted["output"]["text"]
    assert openai.requests == []


async def test_an_unknown_provider_fails_the_step_at_once(api: Any) -> None:
    status, _, _ = await _run(api, "nowhere")

    step = steps_of(status)["llm"]
    assert (status["status"], step["attempts"]) == ("failed", 1)
    assert "unknown LLM provider 'telepathy'" in step["error"]["message"]


async def _metrics(api: Any) -> Any:
    client, _ = api
    return scrape((await client.get("/metrics")).text)


async def test_a_dated_answer_is_priced_and_labelled_as_the_model_asked_for(
    api: Any, openai: FakeOpenAI
) -> None:
    # OpenAI answers a `gpt-4o-mini` request as a dated snapshot of it.
    openai.reply(Reply("ok", prompt_tokens=1000, completion_tokens=500,
                       model="gpt-4o-mini-2024-07-18"))  # fmt: skip
    before = await _metrics(api)
    status, results, _ = await _run(api, "chat_as", {"model": "gpt-4o-mini"})
    after = await _metrics(api)

    assert status["status"] == "completed", status
    assert results["output"]["model"] == "gpt-4o-mini-2024-07-18"  # what answered, as said
    asked = {"provider": "openai", "model": "gpt-4o-mini"}
    cost = value(after, "llm_cost_usd_total", **asked) - value(
        before, "llm_cost_usd_total", **asked
    )
    assert cost == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1_000_000)
    tokens = value(after, "llm_tokens_total", **asked, kind="prompt") - value(
        before, "llm_tokens_total", **asked, kind="prompt"
    )
    assert tokens == 1000
    assert not [key for key in after if ("model", "gpt-4o-mini-2024-07-18") in key[1]]


async def test_models_named_by_input_share_one_label(api: Any, openai: FakeOpenAI) -> None:
    before = await _metrics(api)
    for n in range(3):
        openai.reply(Reply("ok"))
        status, _, _ = await _run(api, "chat_as", {"model": f"made-up-{n}"})
        assert status["status"] == "completed", status
    after = await _metrics(api)

    other = {"provider": "openai", "model": "other", "outcome": "ok"}
    assert (
        value(after, "llm_requests_total", **other) - value(before, "llm_requests_total", **other)
        == 3
    )
    assert not [key for key in after if any(v.startswith("made-up") for _, v in key[1])]


async def test_tokens_of_answers_that_fail_validation_are_still_counted(
    api: Any, openai: FakeOpenAI
) -> None:
    openai.reply(Reply("not json", prompt_tokens=40, completion_tokens=9),
                 Reply('{"amount": 1}', prompt_tokens=60, completion_tokens=6))  # fmt: skip
    before = await _metrics(api)
    status, _, _ = await _run(api, "extract", {"text": "Order A-1001"})
    after = await _metrics(api)

    assert status["status"] == "failed"
    labels = {"provider": "openai", "model": "fake-model-1"}
    assert (
        value(after, "llm_tokens_total", **labels, kind="prompt")
        - value(before, "llm_tokens_total", **labels, kind="prompt")
        == 100
    )
    failed = {**labels, "outcome": "llm_invalid_output"}
    assert (
        value(after, "llm_requests_total", **failed) - value(before, "llm_requests_total", **failed)
        == 1
    )
