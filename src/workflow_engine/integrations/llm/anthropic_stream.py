"""A Messages API answer streamed (`"stream": true`).

The stream's events: `message_start` (the model, and the input tokens counted), then per
content block a `content_block_start` (a `text` block, or a `tool_use` block with its id and
name), `content_block_delta`s (`text_delta` text, handed to `on_delta` as it comes, or
`input_json_delta` pieces of a tool call's JSON input) and a `content_block_stop`; then
`message_delta` (the output tokens counted so far, the last one final) and `message_stop`.
`ping`s come in between; an `error` event (an overload mid-answer) ends the stream. The result
is the Completion the same request unstreamed would have given.
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

PROVIDER = "anthropic"


async def stream_messages(
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
    blocks: dict[int, list[str]] = {}  # index: [type, text or JSON so far, tool id, tool name]
    model, input_tokens, output_tokens = str(body.get("model", "")), 0, 0
    stopped = False
    async with post_stream(url, {**body, "stream": True}, headers, timeout=timeout,
                           max_retries=max_retries, where=where) as messages:  # fmt: skip
        async for event, data in messages:
            message = parsed(data, where)
            kind = message.get("type", event)
            if kind == "error":
                error = _object(message.get("error"))
                raise StreamBroken(f"{where} failed while streaming: {error.get('message')}")
            if kind == "message_start":
                start = _object(message.get("message"))
                model = str(start.get("model") or model)
                counted = _object(start.get("usage"))
                input_tokens = _count(counted, "input_tokens", where)
                output_tokens = _count(counted, "output_tokens", where)
            elif kind == "content_block_start":
                block = _object(message.get("content_block"))
                blocks[_index(message)] = [
                    str(block.get("type")), str(block.get("text") or ""),
                    str(block.get("id") or ""), str(block.get("name") or ""),
                ]  # fmt: skip
            elif kind == "content_block_delta":
                await _add_delta(blocks, message, on_delta)
            elif kind == "message_delta":
                counted = _object(message.get("usage"))
                if "output_tokens" in counted:  # cumulative: the last one is the count
                    output_tokens = _count(counted, "output_tokens", where)
                if "input_tokens" in counted:
                    input_tokens = _count(counted, "input_tokens", where)
            elif kind == "message_stop":
                stopped = True
                break
    if not stopped:
        raise StreamBroken(f"{where}'s streamed answer ended before `message_stop`")
    ordered = [blocks[index] for index in sorted(blocks)]
    return Completion(
        text="".join(text for kind, text, _, _ in ordered if kind == "text"),
        provider=PROVIDER,
        model=model,
        usage=Usage(input_tokens, output_tokens),
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        tool_calls=tuple(
            ToolCall.from_json(call_id, name, arguments)
            for kind, arguments, call_id, name in ordered
            if kind == "tool_use"
        ),
    )


async def _add_delta(
    blocks: dict[int, list[str]], message: dict[str, Any], on_delta: DeltaCallback
) -> None:
    delta = _object(message.get("delta"))
    block = blocks.setdefault(_index(message), ["text", "", "", ""])
    if delta.get("type") == "text_delta" and isinstance(text := delta.get("text"), str):
        block[1] += text
        if text:
            await on_delta(text)
    elif delta.get("type") == "input_json_delta" and isinstance(
        piece := delta.get("partial_json"), str
    ):
        block[1] += piece


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _index(message: dict[str, Any]) -> int:
    index = message.get("index", 0)
    return index if isinstance(index, int) else 0


def _count(counted: dict[str, Any], name: str, where: str) -> int:
    try:
        return int(counted.get(name) or 0)
    except (TypeError, ValueError):
        raise StreamBroken(f"{where} streamed a usage that is not counts",
                           error_class="llm_bad_response") from None  # fmt: skip
