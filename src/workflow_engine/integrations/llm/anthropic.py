"""Anthropic's Messages API (`POST /v1/messages`), behind the same interface as every provider.

What differs from the chat-completions shape: the key goes in `x-api-key` with the API version
in `anthropic-version`; system messages are one top-level `system` text; `max_tokens` is
required; the answer is a list of content blocks (their text joined) with `input_tokens` and
`output_tokens`. JSON answers (`classify`, `extract`) are asked for in the system text, as the
API has no JSON mode, and checked like every provider's (`structured.py`). Overloaded (529) and
other 5xx answers, 429s and timeouts are retried by `http_api.post_json`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from workflow_engine.integrations.llm.anthropic_stream import stream_messages
from workflow_engine.integrations.llm.http_api import HTTPProvider, post_json
from workflow_engine.integrations.llm.types import (
    ChatRequest,
    Completion,
    LLMError,
    Message,
    ToolCall,
    Usage,
)

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-haiku-4-5"
# The API requires a ceiling; a step's `max_tokens` sets its own.
DEFAULT_MAX_TOKENS = 4096
_JSON_ONLY = "Answer with one JSON object only, no text around it."


class AnthropicProvider(HTTPProvider):
    name = "anthropic"

    async def chat(self, request: ChatRequest) -> Completion:
        body = request_body(request, request.model or self.model)
        headers = {"anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        if request.on_delta is not None:  # the same Completion, its text handed on as it comes
            return await stream_messages(
                f"{self.base_url}/v1/messages", body, headers, on_delta=request.on_delta,
                timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
            )  # fmt: skip
        started = time.perf_counter()
        answer = await post_json(
            f"{self.base_url}/v1/messages", body, headers,
            timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
        )  # fmt: skip
        latency = (time.perf_counter() - started) * 1000
        return _completion(answer, body["model"], round(latency, 3))


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Messages API request for `request` (streamed or not)."""
    system = [m.content for m in request.messages if m.role == "system"]
    if request.json_output:
        system.append(_JSON_ONLY)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages),
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in request.tools
        ]
    return body


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """The conversation as the API wants it: tool calls are `tool_use` blocks of the assistant
    turn, and their results `tool_result` blocks of one user turn that follows it."""
    shaped: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id,
                     "content": message.content}  # fmt: skip
            previous = shaped[-1] if shaped else None
            if previous and previous["role"] == "user" and isinstance(previous["content"], list):
                previous["content"].append(block)
            else:
                shaped.append({"role": "user", "content": [block]})
        elif message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            blocks += [{"type": "tool_use", "id": call.id, "name": call.name,
                        "input": call.arguments} for call in message.tool_calls]  # fmt: skip
            shaped.append({"role": "assistant", "content": blocks})
        else:
            shaped.append({"role": message.role, "content": message.content})
    return shaped


def _completion(answer: Any, requested_model: str, latency_ms: float) -> Completion:
    try:
        blocks = answer["content"]
        texts = [block.get("text") for block in blocks if block.get("type") == "text"]
        text = "".join(part for part in texts if isinstance(part, str))
        calls = tuple(
            ToolCall(str(block["id"]), str(block["name"]), block["input"])
            if isinstance(block.get("input"), dict)
            else ToolCall(str(block["id"]), str(block["name"]), {},
                          malformed=json.dumps(block.get("input")))
            for block in blocks
            if block.get("type") == "tool_use"
        )  # fmt: skip
        usage = answer.get("usage") or {}
        return Completion(
            text=text,
            provider=AnthropicProvider.name,
            model=str(answer.get("model") or requested_model),
            usage=Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))),
            latency_ms=latency_ms,
            tool_calls=calls,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise LLMError(
            "the provider's answer is not a Messages API message",
            retryable=True, error_class="llm_bad_response",
        ) from None  # fmt: skip
