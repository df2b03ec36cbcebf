"""Anthropic's Messages API (`POST /v1/messages`), behind the same interface as every provider.

What differs from the chat-completions shape: the key goes in `x-api-key` with the API version
in `anthropic-version`; system messages are one top-level `system` text; `max_tokens` is
required; the answer is a list of content blocks (their text joined) with `input_tokens` and
`output_tokens`. JSON answers (`classify`, `extract`) are asked for in the system text, as the
API has no JSON mode, and checked like every provider's (`structured.py`). Overloaded (529) and
other 5xx answers, 429s and timeouts are retried by `http_api.post_json`.
"""

from __future__ import annotations

import time
from typing import Any

from workflow_engine.integrations.llm.http_api import HTTPProvider, post_json
from workflow_engine.integrations.llm.types import ChatRequest, Completion, LLMError, Usage

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-haiku-4-5"
# The API requires a ceiling; a step's `max_tokens` sets its own.
DEFAULT_MAX_TOKENS = 4096
_JSON_ONLY = "Answer with one JSON object only, no text around it."


class AnthropicProvider(HTTPProvider):
    name = "anthropic"

    async def chat(self, request: ChatRequest) -> Completion:
        system = [m.content for m in request.messages if m.role == "system"]
        if request.json_output:
            system.append(_JSON_ONLY)
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        started = time.perf_counter()
        answer = await post_json(
            f"{self.base_url}/v1/messages", body, headers,
            timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
        )  # fmt: skip
        latency = (time.perf_counter() - started) * 1000
        return _completion(answer, body["model"], round(latency, 3))


def _completion(answer: Any, requested_model: str, latency_ms: float) -> Completion:
    try:
        blocks = answer["content"]
        texts = [block.get("text") for block in blocks if block.get("type") == "text"]
        text = "".join(part for part in texts if isinstance(part, str))
        usage = answer.get("usage") or {}
        return Completion(
            text=text,
            provider=AnthropicProvider.name,
            model=str(answer.get("model") or requested_model),
            usage=Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))),
            latency_ms=latency_ms,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise LLMError(
            "the provider's answer is not a Messages API message",
            retryable=True, error_class="llm_bad_response",
        ) from None  # fmt: skip
