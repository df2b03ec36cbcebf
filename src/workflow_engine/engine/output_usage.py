"""What a run's completed LLM steps report, summed from their outputs (each `llm.*` output
records its provider, model, token usage, latency and calls), for the run's status. The
status read picks the outputs: those of its completed `llm.*` steps (`db/read_statements.py`).
Every call a run made — failed attempts' too — is recorded by the `usage` package and summed
at `GET /api/v1/workflows/{id}/usage`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FIGURES = ("calls", "prompt_tokens", "completion_tokens", "total_tokens")


def llm_usage(outputs: Iterable[Any]) -> dict[str, Any]:
    """Totals over the outputs of a run's completed LLM steps (in the steps' order), and per
    provider and model."""
    per_model: dict[tuple[str, str], dict[str, Any]] = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("usage"), dict):
            continue
        key = (str(output.get("provider")), str(output.get("model")))
        entry = per_model.setdefault(
            key, {"provider": key[0], "model": key[1], "latency_ms": 0.0,
                  **dict.fromkeys(FIGURES, 0)},
        )  # fmt: skip
        usage = output["usage"]
        entry["calls"] += int(output.get("calls", 1))
        for figure in FIGURES[1:]:
            entry[figure] += int(usage.get(figure, 0))
        entry["latency_ms"] = round(entry["latency_ms"] + float(output.get("latency_ms", 0)), 3)
    models = sorted(per_model.values(), key=lambda e: (e["provider"], e["model"]))
    return {
        **{figure: sum(entry[figure] for entry in models) for figure in FIGURES},
        "by_model": models,
    }
