"""Classification and extraction for providers that only chat: ask for JSON, check it, and
ask once more — with what was wrong — when the answer does not fit."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from jsonschema import Draft202012Validator

from workflow_engine.integrations.llm.types import (
    ChatRequest,
    Classification,
    Completion,
    Extraction,
    LLMError,
    Message,
)


class ChatBackedProvider:
    """`classify` and `extract` on top of a provider's `chat`."""

    name: str
    model: str

    async def chat(self, request: ChatRequest) -> Completion:
        raise NotImplementedError

    async def classify(
        self,
        text: str,
        labels: dict[str, str],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Classification:
        listed = "\n".join(
            f"- {label}: {about}" if about else f"- {label}" for label, about in labels.items()
        )
        system = (
            "Classify the user's text into exactly one of these labels:\n"
            f"{listed}\n"
            + (f"{instructions}\n" if instructions else "")
            + 'Answer with only a JSON object: {"label": "<one of the labels>", '
            '"confidence": <a number from 0 to 1>}.'
        )

        def check(answer: Any) -> str | None:
            if not isinstance(answer, dict) or answer.get("label") not in labels:
                return f"label must be one of: {', '.join(labels)}"
            confidence = answer.get("confidence", 1.0)
            if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
                return "confidence must be a number from 0 to 1"
            return None

        answer, completion = await self._json_answer(system, text, check, model)
        return Classification(
            label=answer["label"],
            confidence=float(answer.get("confidence", 1.0)),
            completion=completion,
        )

    async def extract(
        self,
        text: str,
        schema: dict[str, Any],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Extraction:
        validator = Draft202012Validator(schema)
        system = (
            "Extract data from the user's text as a JSON object matching this JSON Schema:\n"
            f"{json.dumps(schema, ensure_ascii=False)}\n"
            + (f"{instructions}\n" if instructions else "")
            + "Answer with only the JSON object."
        )

        def check(answer: Any) -> str | None:
            problems = [
                f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
                for error in validator.iter_errors(answer)
            ]
            return "; ".join(problems[:10]) or None

        answer, completion = await self._json_answer(system, text, check, model)
        return Extraction(data=answer, completion=completion)

    async def _json_answer(
        self, system: str, text: str, check: Any, model: str | None
    ) -> tuple[Any, Completion]:
        """A JSON answer that passes `check` (which returns what is wrong, or None); asked
        again once, with the problem, before failing."""
        messages = [Message("system", system), Message("user", text)]
        total: Completion | None = None
        problem = ""
        for _ in range(2):
            try:
                completion = await self.chat(
                    ChatRequest(tuple(messages), model=model, temperature=0, json_output=True)
                )
            except LLMError as exc:
                exc.spent = total
                raise
            total = completion if total is None else _combined(total, completion)
            try:
                answer = json.loads(_strip_fence(completion.text))
            except ValueError:
                problem = "the answer was not JSON"
            else:
                problem = check(answer) or ""
                if not problem:
                    return answer, total
            messages += [
                Message("assistant", completion.text),
                Message("user", f"That answer is not valid: {problem}. Answer again."),
            ]
        raise LLMError(
            f"{self.name} gave no valid answer in two tries: {problem}",
            retryable=True,
            error_class="llm_invalid_output",
            spent=total,
        )


def _combined(first: Completion, second: Completion) -> Completion:
    return replace(
        second,
        usage=first.usage + second.usage,
        latency_ms=round(first.latency_ms + second.latency_ms, 3),
        calls=first.calls + second.calls,
    )


def _strip_fence(text: str) -> str:
    """Models asked for JSON sometimes wrap it in a Markdown code fence anyway."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()
