"""Streamed LLM answers (`ChatRequest.on_delta`) against local servers shaped like OpenAI's and
Anthropic's APIs: the text arrives in pieces, and the Completion is the one the same request
unstreamed gives — text, usage as the provider counted it, tool calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic
from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai
from workflow_engine.integrations.llm import ChatRequest, LLMError, Message
from workflow_engine.integrations.llm.anthropic import AnthropicProvider
from workflow_engine.integrations.llm.offline import OfflineProvider
from workflow_engine.integrations.llm.openai_compatible import OpenAICompatible
from workflow_engine.integrations.llm.types import ToolSpec

ANSWER = "Your order ships today from the Berlin warehouse."
LOOKUP = ToolSpec("lookup_order", "Find an order", {
    "type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"],
})  # fmt: skip


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with fake_anthropic() as fake:
        yield fake


def _openai(fake: FakeOpenAI, retries: int = 1) -> OpenAICompatible:
    return OpenAICompatible(base_url=fake.url, api_key="sk-test", model="gpt-4o-mini",
                            timeout=2, max_retries=retries)  # fmt: skip


def _anthropic(fake: FakeAnthropic, retries: int = 1) -> AnthropicProvider:
    return AnthropicProvider(base_url=fake.url, api_key="sk-ant-test", model="claude-haiku-4-5",
                             timeout=2, max_retries=retries)  # fmt: skip


class Deltas(list[str]):
    async def __call__(self, text: str) -> None:
        self.append(text)


def _request(deltas: Deltas | None, *, tools: tuple[ToolSpec, ...] = ()) -> ChatRequest:
    return ChatRequest((Message("system", "Be brief."), Message("user", "Where is order 42?")),
                       tools=tools, on_delta=deltas)  # fmt: skip


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_streamed_answer_arrives_in_pieces_and_completes_as_unstreamed(
    provider: str, openai: FakeOpenAI, anthropic: FakeAnthropic
) -> None:
    fake = openai if provider == "openai" else anthropic
    fake.reset()
    llm = _openai(openai) if provider == "openai" else _anthropic(anthropic)
    reply = Reply(ANSWER, prompt_tokens=23, completion_tokens=9, model="snapshot-2025",
                  stream_pause=0)  # fmt: skip
    fake.reply(reply, reply)
    deltas = Deltas()

    streamed = await llm.chat(_request(deltas))
    unstreamed = await llm.chat(_request(None))

    assert deltas == ["Your", " order", " ships", " today", " from", " the", " Berlin",
                      " warehouse."]  # fmt: skip
    assert fake.requests[0]["stream"] is True
    assert "stream" not in fake.requests[1]
    assert (streamed.text, streamed.usage, streamed.model, streamed.provider) == (
        unstreamed.text, unstreamed.usage, unstreamed.model, unstreamed.provider)  # fmt: skip
    assert streamed.text == ANSWER
    assert (streamed.usage.prompt_tokens, streamed.usage.completion_tokens) == (23, 9)
    assert streamed.latency_ms > 0


async def test_openai_streams_usage_only_when_asked_and_we_ask(openai: FakeOpenAI) -> None:
    openai.reset()
    openai.reply(Reply(ANSWER, stream_pause=0))
    await _openai(openai).chat(_request(Deltas()))
    assert openai.requests[0]["stream_options"] == {"include_usage": True}


async def test_a_server_that_sends_no_usage_gets_its_tokens_estimated(
    openai: FakeOpenAI,
) -> None:
    openai.reset()
    openai.reply(Reply(ANSWER, stream_pause=0, streams_usage=False))
    streamed = await _openai(openai).chat(_request(Deltas()))
    # Four characters a token, so that a budget still counts what such a server spends.
    prompt = len("Be brief.") + len("Where is order 42?")
    assert streamed.usage.prompt_tokens == -(-prompt // 4)
    assert streamed.usage.completion_tokens == -(-len(ANSWER) // 4)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streamed_tool_calls_are_put_together_from_their_fragments(
    provider: str, openai: FakeOpenAI, anthropic: FakeAnthropic
) -> None:
    fake = openai if provider == "openai" else anthropic
    fake.reset()
    llm = _openai(openai) if provider == "openai" else _anthropic(anthropic)
    calls = [{"name": "lookup_order", "arguments": {"order": "42", "deep": {"a": [1, 2]}}},
             {"name": "lookup_order", "arguments": "not json"}]  # fmt: skip
    fake.reply(Reply("", tool_calls=calls, stream_pause=0))

    streamed = await llm.chat(_request(Deltas(), tools=(LOOKUP,)))

    assert [(c.name, c.arguments, c.malformed) for c in streamed.tool_calls] == [
        ("lookup_order", {"order": "42", "deep": {"a": [1, 2]}}, None),
        ("lookup_order", {}, "not json"),
    ]
    assert len({c.id for c in streamed.tool_calls}) == 2
    assert streamed.text == ""
    assert fake.requests[0]["tools"]  # the tools went with the streamed request


@pytest.mark.parametrize("status", [429, 503, 529])
async def test_a_refusal_before_the_stream_begins_is_retried(
    status: int, anthropic: FakeAnthropic
) -> None:
    anthropic.reset()
    anthropic.reply(Reply(status=status, headers={"retry-after": "0"}),
                    Reply(ANSWER, stream_pause=0))  # fmt: skip
    deltas = Deltas()
    completion = await _anthropic(anthropic).chat(_request(deltas))
    assert completion.text == ANSWER == "".join(deltas)
    assert len(anthropic.requests) == 2


async def test_refused_credentials_fail_a_streamed_call_at_once(openai: FakeOpenAI) -> None:
    openai.reset()
    openai.reply(Reply(status=401))
    with pytest.raises(LLMError) as failure:
        await _openai(openai, retries=2).chat(_request(Deltas()))
    assert (failure.value.error_class, failure.value.retryable) == ("llm_auth", False)
    assert len(openai.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_cut_off_midway_fails_retryably_without_a_retry_of_its_own(
    provider: str, openai: FakeOpenAI, anthropic: FakeAnthropic
) -> None:
    fake = openai if provider == "openai" else anthropic
    fake.reset()
    llm = _openai(openai) if provider == "openai" else _anthropic(anthropic)
    fake.reply(Reply(ANSWER, stream_pause=0, stream_break=5))
    deltas = Deltas()
    with pytest.raises(LLMError) as failure:
        await llm.chat(_request(deltas))
    assert (failure.value.error_class, failure.value.retryable) == ("llm_unavailable", True)
    assert deltas  # some text came before the break
    assert "".join(deltas) != ANSWER
    assert len(fake.requests) == 1  # what was handed on cannot be taken back: the step retries


async def test_the_offline_provider_streams_its_answer_a_word_at_a_time() -> None:
    deltas = Deltas()
    request = ChatRequest((Message("system", "[kb-1] Shipping: Orders ship within two days "
                                   "from our warehouse."),
                           Message("user", "When do orders ship?")), on_delta=deltas)  # fmt: skip
    streamed = await OfflineProvider().chat(request)
    unstreamed = await OfflineProvider().chat(ChatRequest(request.messages))
    assert streamed == unstreamed
    assert len(deltas) > 3
    assert "".join(deltas) == streamed.text
