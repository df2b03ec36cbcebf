"""A chat completion streamed (`"stream": true`), for providers speaking OpenAI's API.

Each message is a `chat.completion.chunk`: `choices[0].delta.content` is the next piece of
text, handed to `on_delta` as it comes; `choices[0].delta.tool_calls` carries tool calls in
fragments, keyed by `index` (the first fragment of one has its `id` and name, the rest more of
its JSON arguments); `stream_options.include_usage` asks for a last chunk with the `usage` the
provider counted and no choices. `data: [DONE]` ends the stream (a stream that ends without
it, or a `finish_reason`, broke off). The result is the Completion
the same request unstreamed would have given.
"""

from __future__ import annotations

import time
from typing import Any

from workflow_engine.integrations.llm.streaming import (
    StreamBroken,
    parsed,
    post_stream,
)
from workflow_engine.integrations.llm.types import Completion, DeltaCallback, ToolCall, Usage

PROVIDER = "openai"


async def stream_chat(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    on_delta: DeltaCallback,
    timeout: float,
    max_retries: int,
    where: str,
) -> Completion:
    """`body` is the request as the provider built it unstreamed; it is asked to stream."""
    started = time.perf_counter()
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    texts: list[str] = []
    tools: dict[int, list[str]] = {}  # index: [id, name, arguments so far]
    model, done, finished = str(body.get("model", "")), False, False
    usage: Usage | None = None
    async with post_stream(url, body, headers, timeout=timeout, max_retries=max_retries,
                           where=where) as messages:  # fmt: skip
        async for _event, data in messages:
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = parsed(data, where)
            if isinstance(error := chunk.get("error"), dict):
                raise StreamBroken(f"{where} failed while streaming: {error.get('message')}")
            model = str(chunk.get("model") or model)
            if isinstance(counted := chunk.get("usage"), dict):
                usage = _usage(counted, where)
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict) or choice.get("index", 0) != 0:
                    continue
                finished = finished or choice.get("finish_reason") is not None
                if isinstance(text := delta.get("content"), str) and text:
                    texts.append(text)
                    await on_delta(text)
                for fragment in delta.get("tool_calls") or ():
                    _add_fragment(tools, fragment)
    if not (done or finished):  # some servers end without `[DONE]`, never without a reason
        raise StreamBroken(f"{where}'s streamed answer ended before `[DONE]`")
    if usage is None:  # a server that ignores `include_usage`: estimated, so budgets still count
        prompt = "".join(str(m.get("content") or "") for m in body.get("messages") or ())
        usage = Usage.estimated(prompt, "".join(texts))
    return Completion(
        text="".join(texts),
        provider=PROVIDER,
        model=model,
        usage=usage,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        tool_calls=tuple(ToolCall.from_json(*tools[index]) for index in sorted(tools)),
    )


def _add_fragment(tools: dict[int, list[str]], fragment: Any) -> None:
    if not isinstance(fragment, dict):
        return
    index = fragment.get("index", 0)
    call = tools.setdefault(index if isinstance(index, int) else 0, ["", "", ""])
    function = fragment.get("function")
    function = function if isinstance(function, dict) else {}
    if isinstance(fragment.get("id"), str):
        call[0] = fragment["id"]
    if isinstance(function.get("name"), str):
        call[1] += function["name"]
    if isinstance(function.get("arguments"), str):
        call[2] += function["arguments"]


def _usage(counted: dict[str, Any], where: str) -> Usage:
    try:
        return Usage(int(counted.get("prompt_tokens", 0)), int(counted.get("completion_tokens", 0)))
    except (TypeError, ValueError):
        raise StreamBroken(f"{where} streamed a usage that is not counts",
                           error_class="llm_bad_response") from None  # fmt: skip
