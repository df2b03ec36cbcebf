"""The offline provider: deterministic answers with no network, for demos and tests.

It is not a language model and says so: every output it produces carries
`"provider": "offline"`. What it does is honest heuristics:

- **classify** scores each label by the words of its name and description, plus a small
  lexicon for the labels support workflows use (orders, billing, refunds, bugs, how-to, spam,
  urgency, sentiment), counted in the text; the best score wins and the confidence is its
  share of all scores (smoothed, so a text with no evidence gets a low confidence and the
  label named `other`/`general` when there is one).
- **extract** fills each property of the schema by its name, type and format: e-mail
  addresses, order numbers, amounts and other numbers, yes/no flags, enum values (classified
  as above), and first sentences for summaries; the result is checked against the schema.
- **chat** drafts extractively: the sentences of the context (system messages and earlier
  turns — where a workflow puts retrieved articles) that share the most words with the last
  user message, in their original order. It invents nothing.

Token counts are estimates (a token per four characters), labelled as the provider's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from jsonschema import Draft202012Validator

from workflow_engine.integrations.llm.streaming import in_pieces
from workflow_engine.integrations.llm.types import (
    ChatRequest,
    Classification,
    Completion,
    Extraction,
    LLMError,
    ToolCall,
    ToolSpec,
    Usage,
)
from workflow_engine.text import STOPWORDS, content_words, stem, words

MODEL = "offline-heuristics-1"
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
ORDER_NUMBER = re.compile(
    r"(?:order|#)\s*(?:number|no\.?|id)?\s*#?\s*([A-Z0-9-]*\d[A-Z0-9-]*)", re.I
)
# A source marked in a prompt: `[kb-track-order] Tracking an order: ...`.
SOURCE = re.compile(r"\[([^\]\n]{1,80})\]\s*(?:[^:\n\[]{0,160}?:\s)?")
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
# Words that signal the labels support workflows commonly use, beyond the labels' own names.
LEXICON: dict[str, tuple[str, ...]] = {
    "order": ("order", "package", "delivery", "shipping", "shipped", "tracking", "arrive",
              "arrived", "parcel", "item", "purchase"),
    "billing": ("invoice", "charge", "charged", "payment", "card", "billing", "subscription",
                "plan", "receipt", "price", "vat", "tax"),
    "refund": ("refund", "reimburse", "return", "chargeback"),
    "bug": ("bug", "error", "crash", "crashes", "broken", "fails", "failing", "exception",
            "doesn't", "work", "working", "500", "blank", "stuck"),
    "how_to": ("how", "guide", "setup", "set", "configure", "enable", "export", "import",
               "where", "find", "steps", "tutorial", "possible"),
    "spam": ("winner", "won", "prize", "crypto", "bitcoin", "btc", "eth", "wallet", "seo",
             "backlinks", "ranking", "casino", "lottery", "click", "unsubscribe", "investment",
             "guaranteed", "guarantee", "congratulations", "giveaway", "selected", "exclusive",
             "claim", "deposit", "legit", "double", "risk", "fee", "confidential"),
    "account": ("login", "password", "account", "sign", "2fa", "locked", "email", "profile"),
    "urgent": ("urgent", "asap", "immediately", "now", "today", "emergency", "critical",
               "down", "outage", "lawyer", "legal"),
    "high": ("urgent", "asap", "immediately", "critical", "down", "outage"),
    "low": ("whenever", "curious", "question", "wondering", "someday"),
    "angry": ("angry", "furious", "unacceptable", "ridiculous", "terrible", "worst", "scam",
              "disgusted", "outraged", "never", "awful", "lawyer", "demand"),
    "negative": ("disappointed", "unhappy", "bad", "problem", "issue", "annoyed", "frustrated",
                 "unfortunately", "still", "again"),
    "positive": ("great", "love", "thanks", "awesome", "happy", "excellent", "appreciate",
                 "wonderful", "perfect"),
}  # fmt: skip
# Phrases that say more than their words; each match counts double.
PHRASES: dict[str, re.Pattern[str]] = {
    "how_to": re.compile(
        r"\bhow (?:do|can|should) (?:i|we)\b|\bhow to\b|\bwhere (?:is|are|can i|do i)\b"
        r"|\bis (?:it|there a way) possible\b|\bwhat happens if\b|\bis there a way\b",
        re.I,
    ),
    "refund": re.compile(r"\bmoney back\b|\bwant (?:a|my) refund\b|\brefund me\b", re.I),
    "bug": re.compile(r"\b(?:doesn't|does not|won't|stopped) work|\berror \d{3}\b", re.I),
}
FALLBACK_LABELS = ("other", "general", "unknown", "none", "neutral", "normal")


class OfflineProvider:
    name = "offline"

    def __init__(self, model: str = MODEL) -> None:
        self.model = model

    async def chat(self, request: ChatRequest) -> Completion:
        if request.on_delta is not None:  # streamed: the same answer, handed on word by word
            completion = await self.chat(replace(request, on_delta=None))
            await in_pieces(completion.text, request.on_delta)
            return completion
        if request.tools:
            return self._agent_turn(request)
        *context, last = request.messages or (None,)
        question = last.content if last is not None else ""
        background = "\n".join(m.content for m in context if m is not None)
        text = draft(question, background)
        prompt = "\n".join(m.content for m in request.messages)
        return self._completion(prompt, text)

    async def classify(
        self,
        text: str,
        labels: dict[str, str],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Classification:
        label, confidence, scores = classify(text, labels)
        completion = self._completion(text, label)
        return Classification(label, confidence, completion, scores)

    async def extract(
        self,
        text: str,
        schema: dict[str, Any],
        *,
        instructions: str | None = None,
        model: str | None = None,
    ) -> Extraction:
        data = extract(text, schema)
        problems = [e.message for e in Draft202012Validator(schema).iter_errors(data)]
        if problems:
            raise LLMError(
                f"the offline provider could not fill the schema: {'; '.join(problems[:5])}",
                retryable=False, error_class="llm_invalid_output",
            )  # fmt: skip
        return Extraction(data, self._completion(text, str(data)))

    def _completion(
        self, prompt: str, answer: str, tool_calls: tuple[ToolCall, ...] = ()
    ) -> Completion:
        usage = Usage.estimated(prompt, answer)
        return Completion(answer, self.name, self.model, usage, latency_ms=0.0,
                          tool_calls=tool_calls)  # fmt: skip

    def _agent_turn(self, request: ChatRequest) -> Completion:
        """A tool-using turn, planned from the question and the tools' schemas: first every
        offered tool whose required arguments the question fills (a search tool's `query`
        with the question, an `*_id` with a number in it), then an answer drawn from what the
        tools returned, as `chat` drafts from retrieved articles."""
        question = next((m.content for m in request.messages if m.role == "user"), "")
        prompt = "\n".join(m.content for m in request.messages)
        results = [m.content for m in request.messages if m.role == "tool"]
        turn = sum(1 for m in request.messages if m.role == "assistant") + 1
        if not results:
            calls = tuple(
                ToolCall(f"offline_{turn}_{index}", tool.name, arguments)
                for index, tool in enumerate(request.tools)
                if (arguments := plan_arguments(tool, question)) is not None
            )
            if calls:
                return self._completion(prompt, "", calls)
        # Drawn from what the tools returned only: the system text is instructions, not facts.
        background = "\n".join(text for result in results for text in _prose(result))
        return self._completion(prompt, draft(question, background))


def classify(text: str, labels: dict[str, str]) -> tuple[str, float, dict[str, float]]:
    """The best label for `text`, its confidence, and every label's score."""
    if not labels:
        raise LLMError("no labels to choose from", retryable=False, error_class="llm_request")
    counts: dict[str, int] = {}
    for word in words(text):
        counts[word] = counts.get(word, 0) + 1
    punctuation = text.count("!!") + text.count("$$$")
    scores: dict[str, float] = {}
    for label, about in labels.items():
        signals = set(words(label.replace("_", " ").replace("-", " "))) | set(words(about))
        signals |= set(LEXICON.get(_key(label), ()))
        signals -= STOPWORDS - {"how", "where", "not", "never"}
        score = float(sum(counts.get(stem(s), 0) for s in signals))
        if _key(label) in ("angry", "spam") and punctuation:
            score += punctuation
        if (phrases := PHRASES.get(_key(label))) is not None:
            score += 2 * len(phrases.findall(text))
        scores[label] = score
    total = sum(scores.values())
    if total == 0:
        fallback = next((lb for lb in labels if _key(lb) in FALLBACK_LABELS), next(iter(labels)))
        return fallback, round(1 / (len(labels) + 1), 3), scores
    best = max(labels, key=lambda lb: (scores[lb], -list(labels).index(lb)))
    confidence = (scores[best] + 1) / (total + len(labels))
    return best, round(min(confidence, 0.99), 3), scores


def extract(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Fill what the text shows of an object schema's properties."""
    properties: dict[str, Any] = schema.get("properties", {}) if isinstance(schema, dict) else {}
    data: dict[str, Any] = {}
    for name, spec in properties.items():
        value = _property(name, spec if isinstance(spec, dict) else {}, text)
        if value is not None:
            data[name] = value
    return data


def draft(question: str, background: str, sentences: int = 3) -> str:
    """The background's sentences most about the question, in their order; or a plain
    acknowledgement when there is no background to draw from. When the background marks its
    sources (`[id] Title: text`, as the templates do), only the sources' text is drawn from,
    never the instructions around them."""
    wanted = content_words(question)
    marks = list(SOURCE.finditer(background))
    if marks:
        ends = [m.start() for m in marks[1:]] + [len(background)]
        material = [background[m.end() : end] for m, end in zip(marks, ends, strict=True)]
    else:
        material = [background]
    candidates = [
        s.strip() for part in material for s in SENTENCE.split(part) if len(s.strip()) > 20
    ]
    overlap = [len(wanted & content_words(candidate)) for candidate in candidates]
    ranked = sorted(range(len(candidates)), key=lambda i: (-overlap[i], i))
    chosen = sorted(i for i in ranked[:sentences] if overlap[i])
    if not chosen:
        topic = ", ".join(sorted(wanted)[:6]) or "your message"
        return (
            f"Thank you for your message about {topic}. We have received it and a member of "
            "our team will follow up. (Drafted by the offline provider: no source matched.)"
        )
    return " ".join(candidates[i] for i in chosen)


def _prose(result: str) -> list[str]:
    """The sentences in a tool's result: its text, or the text values of the JSON it is
    (ticket bodies, article contents), leaving out names, ids and times."""
    try:
        document = json.loads(result)
    except ValueError:
        return [result]
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if len(value) > 20 and " " in value.strip():
                found.append(value.strip())
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document)
    return found


QUERY_NAMES = frozenset({"query", "q", "search", "text", "question", "keywords", "terms"})
IDENTIFIER = re.compile(r"\b\d{3,}\b")


def plan_arguments(tool: ToolSpec, question: str) -> dict[str, Any] | None:
    """The arguments the offline agent calls `tool` with, or None when the question cannot
    fill what the tool requires."""
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    identifier = IDENTIFIER.search(question)
    arguments: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if name.lower() in QUERY_NAMES and kind in ("string", None):
            arguments[name] = question
        elif (name == "id" or name.endswith("_id")) and identifier is not None:
            arguments[name] = int(identifier.group()) if kind == "integer" else identifier.group()
    return arguments if arguments and required <= set(arguments) else None


def _property(name: str, spec: dict[str, Any], text: str) -> Any:
    kind = spec.get("type")
    key = _key(name)
    if spec.get("enum"):
        options = {str(option): "" for option in spec["enum"]}
        label, _, scores = classify(text, options)
        chosen = next(o for o in spec["enum"] if str(o) == label)
        return chosen if any(scores.values()) or "default" not in spec else spec["default"]
    if spec.get("format") == "email" or "email" in key:
        found = EMAIL.search(text)
        return found.group(0) if found else None
    if "order" in key and kind in ("string", None):
        found = ORDER_NUMBER.search(text)
        return found.group(1) if found else None
    if kind in ("number", "integer"):
        number = _number(text)
        if number is None:
            return None
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return any(stem(w) in set(words(text)) for w in words(name.replace("_", " ")))
    if kind == "string":
        if key in ("summary", "question", "topic", "subject", "title"):
            first = next((s.strip() for s in SENTENCE.split(text) if s.strip()), "")
            return first[:200] or None
        return None
    if kind == "array":
        return []
    return None


def _number(text: str) -> float | None:
    """The text's most amount-like number: one next to a currency sign or with decimals
    before a bare one, and never an order number."""
    orders = {m.group(1) for m in ORDER_NUMBER.finditer(text)}
    found = [m for m in NUMBER.finditer(text) if m.group(0).lstrip("-") not in orders]
    if not found:
        return None

    def amount_like(match: re.Match[str]) -> int:
        before = text[max(0, match.start() - 1) : match.start()]
        return 0 if before in "$€£" and before else 1 if "." in match.group(0) else 2

    best = min(found, key=amount_like)
    return float(best.group(0).replace(",", "."))


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
