"""Any server speaking OpenAI's chat-completions API: OpenAI itself, vLLM, Ollama, LM Studio.

Requests go through `http_api.post_json` (its retry policy is every provider's).
"""

from __future__ import annotations

import time
from typing import Any

from workflow_engine.integrations.llm.http_api import HTTPProvider, post_json
from workflow_engine.integrations.llm.types import ChatRequest, Completion, LLMError, Usage


class OpenAICompatible(HTTPProvider):
    name = "openai"

    async def chat(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.json_output:
            body["response_format"] = {"type": "json_object"}
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        started = time.perf_counter()
        answer = await post_json(
            f"{self.base_url}/chat/completions", body, headers,
            timeout=self._timeout, max_retries=self._max_retries, where=self.base_url,
        )  # fmt: skip
        latency = (time.perf_counter() - started) * 1000
        return _completion(answer, body["model"], round(latency, 3))


def _completion(answer: Any, requested_model: str, latency_ms: float) -> Completion:
    try:
        text = answer["choices"][0]["message"]["content"]
        usage = answer.get("usage") or {}
        return Completion(
            text=text if isinstance(text, str) else "",
            provider=OpenAICompatible.name,
            model=str(answer.get("model") or requested_model),
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_ms=latency_ms,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise LLMError(
            "the provider's answer is not a chat completion",
            retryable=True, error_class="llm_bad_response",
        ) from None  # fmt: skip
