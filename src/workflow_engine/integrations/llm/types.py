"""What every provider takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str | None = None  # None: the provider's configured model
    temperature: float | None = None
    max_tokens: int | None = None
    json_output: bool = False  # ask for a JSON object (OpenAI's `response_format`)


@dataclass(frozen=True)
class Usage:
    """What a call cost, as the provider counted it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

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
