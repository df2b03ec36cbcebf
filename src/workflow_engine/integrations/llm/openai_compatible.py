"""Any server speaking OpenAI's chat-completions API: OpenAI itself, vLLM, Ollama, LM Studio.

Requests go through `http_api.post_json` (its retry policy is every provider's).
"""

from __future__ import annotations

import json
import time
from typing import Any

from workflow_engine.integrations.llm.http_api import HTTPProvider, post_json
from workflow_engine.integrations.llm.openai_stream import stream_chat
from workflow_engine.integrations.llm.types import (
    ChatRequest,
    Completion,
    LLMError,
    Message,
    ToolCall,
    Usage,
)


class OpenAICompatible(HTTPProvider):
    name = "openai"

    async def chat(self, request: ChatRequest) -> Completion:
        body = request_body(request, request.model or self.model)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        if request.on_delta is not None:  # the same Completion, its text handed on as it comes
            return await stream_chat(
                f"{self.base_url}/chat/completions", body, headers, on_delta=request.on_delta,
                timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
            )  # fmt: skip
        started = time.perf_counter()
        answer = await post_json(
            f"{self.base_url}/chat/completions", body, headers,
            timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
        )  # fmt: skip
        latency = (time.perf_counter() - started) * 1000
        return _completion(answer, body["model"], round(latency, 3))


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The chat-completions request for `request` (streamed or not)."""
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in request.messages]}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.json_output:
        body["response_format"] = {"type": "json_object"}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {
                "name": tool.name, "description": tool.description, "parameters": tool.parameters,
            }}
            for tool in request.tools
        ]  # fmt: skip
    return body


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    shaped: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        shaped["content"] = message.content or None
        shaped["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {
                "name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False),
            }}
            for call in message.tool_calls
        ]  # fmt: skip
    return shaped


def _completion(answer: Any, requested_model: str, latency_ms: float) -> Completion:
    try:
        message = answer["choices"][0]["message"]
        text = message.get("content")
        calls = tuple(
            ToolCall.from_json(str(call["id"]), str(call["function"]["name"]),
                               str(call["function"].get("arguments") or ""))
            for call in message.get("tool_calls") or ()
        )  # fmt: skip
        usage = answer.get("usage") or {}
        return Completion(
            text=text if isinstance(text, str) else "",
            provider=OpenAICompatible.name,
            model=str(answer.get("model") or requested_model),
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_ms=latency_ms,
            tool_calls=calls,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise LLMError(
            "the provider's answer is not a chat completion",
            retryable=True, error_class="llm_bad_response",
        ) from None  # fmt: skip
