"""Streamed answers of the fake providers: what OpenAI's and Anthropic's APIs send with
`"stream": true`, a piece of text per message, with a pause between messages so that a test
can see deltas arrive before the answer is over.

A reply's `stream_break` (a number of messages) cuts the stream off after that many, as a
provider that fails mid-answer does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol


class StreamedReply(Protocol):
    content: str
    prompt_tokens: int
    completion_tokens: int
    model: str | None
    tool_calls: list[dict[str, Any]]
    stream_pause: float
    stream_break: int | None


def pieces(text: str) -> list[str]:
    """`text` a word at a time, each with the space before it."""
    words = text.split(" ")
    return [words[0], *(f" {word}" for word in words[1:])] if text else []


def _arguments(call: dict[str, Any]) -> str:
    arguments = call["arguments"]
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def openai_messages(reply: StreamedReply, body: dict[str, Any], number: int) -> Iterator[str]:
    """`data:` payloads of a streamed chat completion."""
    model = reply.model or body.get("model", "unknown")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps({
            "id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })  # fmt: skip

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces(reply.content):
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        start = {"index": index, "id": f"call_{number}_{index}", "type": "function",
                 "function": {"name": call["name"], "arguments": ""}}  # fmt: skip
        yield chunk({"tool_calls": [start]})
        arguments = _arguments(call)
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if reply.streams_usage and (body.get("stream_options") or {}).get("include_usage"):
        yield json.dumps({
            "id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "model": model,
            "choices": [],
            "usage": {"prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens,
                      "total_tokens": reply.prompt_tokens + reply.completion_tokens},
        })  # fmt: skip
    yield "[DONE]"


def anthropic_messages(
    reply: StreamedReply, body: dict[str, Any], number: int
) -> Iterator[tuple[str, str]]:
    """`(event, data)` of a streamed Messages API answer."""

    def event(kind: str, **fields: Any) -> tuple[str, str]:
        return kind, json.dumps({"type": kind, **fields})

    yield event("message_start", message={
        "id": f"msg_{number}", "type": "message", "role": "assistant", "content": [],
        "model": reply.model or body.get("model", "unknown"), "stop_reason": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
    })  # fmt: skip
    index = 0
    if reply.content:
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield event("ping")
        for piece in pieces(reply.content):
            yield event("content_block_delta", index=0,
                        delta={"type": "text_delta", "text": piece})  # fmt: skip
        yield event("content_block_stop", index=0)
        index = 1
    for offset, call in enumerate(reply.tool_calls):
        yield event("content_block_start", index=index + offset, content_block={
            "type": "tool_use", "id": f"toolu_{number}_{offset}", "name": call["name"],
            "input": {},
        })  # fmt: skip
        arguments = _arguments(call)
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            yield event("content_block_delta", index=index + offset,
                        delta={"type": "input_json_delta", "partial_json": part})  # fmt: skip
        yield event("content_block_stop", index=index + offset)
    yield event("message_delta",
                delta={"stop_reason": "tool_use" if reply.tool_calls else "end_turn"},
                usage={"output_tokens": reply.completion_tokens})  # fmt: skip
    yield event("message_stop")


def send(
    handler: BaseHTTPRequestHandler,
    reply: StreamedReply,
    messages: Iterator[str] | Iterator[tuple[str, str]],
) -> None:
    """Writes `messages` as server-sent events, pausing between them; the connection's end
    ends the answer (HTTP/1.0, no length)."""
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        for sent, message in enumerate(messages):
            if reply.stream_break is not None and sent >= reply.stream_break:
                break
            kind, data = message if isinstance(message, tuple) else (None, message)
            lines = (f"event: {kind}\n" if kind else "") + f"data: {data}\n\n"
            handler.wfile.write(lines.encode())
            handler.wfile.flush()
            if reply.stream_pause:
                time.sleep(reply.stream_pause)
    except (BrokenPipeError, ConnectionResetError):
        pass
