"""What every provider takes and returns."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]

# Called with each piece of text as a streamed answer arrives (`ChatRequest.on_delta`).
DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: its name as the model sees it, and its arguments' schema."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema of an object


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. `arguments` is what it sent, parsed; a model that sent
    text that is not a JSON object gets `{}` and the text in `malformed`."""

    id: str
    name: str
    arguments: dict[str, Any]
    malformed: str | None = None

    @classmethod
    def from_json(cls, call_id: str, name: str, arguments: str) -> ToolCall:
        """A call whose arguments came as JSON text (whole, or put together from pieces)."""
        try:
            document = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return cls(call_id, name, {}, malformed=arguments)
        return cls(call_id, name, document)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Message:
    """One turn of a conversation. An assistant turn may ask for `tool_calls`; a `tool` turn
    answers one of them (`tool_call_id`) with `content`, the tool's result as text."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str | None = None  # None: the provider's configured model
    temperature: float | None = None
    max_tokens: int | None = None
    json_output: bool = False  # ask for a JSON object (OpenAI's `response_format`)
    tools: tuple[ToolSpec, ...] = ()  # tools the model may ask to call
    # Set: the answer is streamed, each text delta passed here as it arrives; the returned
    # Completion is the same as without streaming.
    on_delta: DeltaCallback | None = None


@dataclass(frozen=True)
class Usage:
    """What a call cost, as the provider counted it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def estimated(cls, prompt: str, answer: str) -> Usage:
        """Counts estimated at four characters a token, for an answer no count came with."""
        return cls(math.ceil(len(prompt) / 4), math.ceil(len(answer) / 4))

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0
    calls: int = 1
    tool_calls: tuple[ToolCall, ...] = ()  # what the model asked to call instead of answering


@dataclass(frozen=True)
class Classification:
    label: str
    confidence: float
    completion: Completion  # the call(s) behind it
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Extraction:
    data: dict[str, Any]
    completion: Completion


class LLMError(Exception):
    """A call failed. `retryable`: another attempt later may succeed (rate limit, 5xx, timeout,
    network); otherwise the request itself is wrong (bad key, unknown model, refused input).
    `spent`: what answered calls cost before the failure (a structured call asks twice), so
    that their tokens are counted even though the step fails."""

    def __init__(
        self, message: str, *, retryable: bool, error_class: str, spent: Completion | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.error_class = error_class
        self.spent = spent


class Provider(Protocol):
    name: str
    model: str

    async def chat(self, request: ChatRequest) -> Completion: ...

    async def classify(
        self,
        text: str,
        labels: dict[str, str],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Classification: ...

    async def extract(
        self,
        text: str,
        schema: dict[str, Any],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Extraction: ...
