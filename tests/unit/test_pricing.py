"""LLM prices: a dated snapshot costs what its model costs; other suffixes are other models."""

from __future__ import annotations

import pytest

from workflow_engine.integrations.llm.pricing import DEFAULT_PRICES, Price, price_of


@pytest.mark.parametrize(("model", "priced_as"), [
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
])  # fmt: skip
def test_snapshots_cost_what_their_model_costs(model: str, priced_as: str) -> None:
    assert price_of(DEFAULT_PRICES, model) == DEFAULT_PRICES[priced_as]


@pytest.mark.parametrize("model", [
    "gpt-4o-mini-tts", "gpt-4o-audio-preview", "gpt-4o-realtime-preview", "llama3", "",
])  # fmt: skip
def test_other_models_have_no_price(model: str) -> None:
    assert price_of(DEFAULT_PRICES, model) is None


def test_four_digit_snapshots_of_listed_models() -> None:
    prices = {"gpt-4": Price(30.0, 60.0)}
    assert price_of(prices, "gpt-4-0613") == prices["gpt-4"]
