"""What an LLM call cost, estimated from its token counts and a price list.

Prices are US dollars per million tokens. The defaults are OpenAI's and Anthropic's list
prices for a few common models when this was written (2026-11, 2026-12); `LLM_PRICES` adds
models or overrides these. A model with no price costs nothing in the metrics (its tokens are
still counted), and the offline provider is free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from workflow_engine.integrations.llm.types import Usage

_SNAPSHOT = re.compile(r"(.+)-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})")


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float


DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-opus-4-1": Price(15.00, 75.00),
}


def price_of(prices: Mapping[str, Price], model: str) -> Price | None:
    """The price of `model`, or of the listed model it is a dated snapshot of: OpenAI answers
    a `gpt-4o-mini` request as `gpt-4o-mini-2024-07-18` (older ones as `gpt-4-0613`), and
    Anthropic names snapshots like `claude-haiku-4-5-20251001`. Other
    suffixes name other models (`gpt-4o-mini-tts`, `gpt-4o-audio-preview`): no price."""
    if model in prices:
        return prices[model]
    found = _SNAPSHOT.fullmatch(model)
    return prices.get(found.group(1)) if found else None


def cost_usd(prices: Mapping[str, Price], model: str, usage: Usage) -> float | None:
    price = price_of(prices, model)
    if price is None:
        return None
    return (
        usage.prompt_tokens * price.input_per_million
        + usage.completion_tokens * price.output_per_million
    ) / 1_000_000
