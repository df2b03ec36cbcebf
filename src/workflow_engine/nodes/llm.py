"""`llm.chat`, `llm.classify` and `llm.extract`: LLM calls as steps.

Every output names the provider and model that answered and what the call cost —
`usage` (prompt, completion and total tokens, as the provider counted them) and
`latency_ms` — and the same goes to the run's log. `provider` and `model` choose per step;
the server's `LLM_PROVIDER` and `LLM_MODEL` otherwise. A rate limit, a 5xx or a timeout that
outlasts the provider's own retries fails the attempt as retryable (the step's `retry`
policy decides); a refused request (bad key, unknown model) fails the step at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from workflow_engine.integrations.llm import (
    ChatRequest,
    Completion,
    LLMError,
    LLMProviders,
    LLMSettings,
    Message,
    Provider,
)
from workflow_engine.integrations.llm.pricing import Price, cost_usd
from workflow_engine.nodes.registry import FatalStepError, NodeContext, StepError, node
from workflow_engine.observability import metrics, tracing
from workflow_engine.usage.meter import OK, BudgetSpent, LLMCall

ROLES = ("system", "user", "assistant")
BUDGET_EXCEEDED = "llm_budget_exceeded"  # the error class of a step a spent budget refused
MAX_LABELS = 100


@cache
def providers_for(settings: LLMSettings) -> LLMProviders:
    return LLMProviders(settings)


@node("llm.chat")
async def chat(
    ctx: NodeContext,
    *,
    prompt: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    system: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    if not isinstance(stream, bool):
        raise FatalStepError("`stream` must be true or false")
    conversation = conversation_of(prompt, messages, system)
    llm = provider_for(ctx, provider)
    # Streamed: the text shows on the run's live streams as it comes (`engine/deltas.py`);
    # the output is the same, and only it is stored.
    on_delta = ctx.deltas.publish if stream else None
    completion = await call_llm(ctx, llm, model, llm.chat(ChatRequest(
        conversation, model=model, temperature=temperature, max_tokens=max_tokens,
        on_delta=on_delta)))  # fmt: skip
    return {"text": completion.text, **cost_fields(completion)}


@node("llm.classify")
async def classify(
    ctx: NodeContext,
    *,
    text: str,
    labels: list[str] | dict[str, str],
    instructions: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    choices = _labels(labels)
    llm = provider_for(ctx, provider)
    result = await call_llm(
        ctx, llm, model, llm.classify(_text(text), choices, instructions=instructions, model=model)
    )
    fields = cost_fields(result.completion)
    return {"label": result.label, "confidence": result.confidence, **fields}


@node("llm.extract")
async def extract(
    ctx: NodeContext,
    *,
    text: str,
    schema: dict[str, Any],
    instructions: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise FatalStepError("schema must be a JSON Schema of an object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise FatalStepError(f"schema is not a valid JSON Schema: {exc.message}") from None
    llm = provider_for(ctx, provider)
    result = await call_llm(
        ctx, llm, model, llm.extract(_text(text), schema, instructions=instructions, model=model)
    )
    return {"data": result.data, **cost_fields(result.completion)}


def provider_for(ctx: NodeContext, name: str | None) -> Provider:
    try:
        return providers_for(ctx.settings.llm).get(name)
    except LLMError as exc:
        raise FatalStepError(str(exc), error_class=exc.error_class) from None


async def call_llm(ctx: NodeContext, llm: Provider, model: str | None, call: Any) -> Any:
    requested = model or llm.model
    # GenAI semantic conventions: "{operation} {model}", provider and usage attributes.
    with tracing.span(f"chat {requested}", kind="client", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": llm.name,
        "gen_ai.system": llm.name, "gen_ai.request.model": requested,
    }):  # fmt: skip
        return await _traced_call(ctx, llm, requested, call)


async def _traced_call(ctx: NodeContext, llm: Provider, model: str, call: Any) -> Any:
    prices = ctx.settings.llm.prices
    label = model_label(llm, model, prices)
    await _admit(ctx, call)
    try:
        result = await call
    except LLMError as exc:
        metrics.llm_requests.labels(llm.name, label, exc.error_class).inc()
        if exc.spent is not None:
            cost = _count_usage(exc.spent, label, model, prices)
            await _record(ctx, exc.spent, cost, exc.error_class)
        tracing.annotate({"error.type": exc.error_class}, error=str(exc))
        ctx.log.warning("llm call failed", error_class=exc.error_class, error=str(exc))
        if exc.retryable:
            raise StepError(str(exc), error_class=exc.error_class) from None
        raise FatalStepError(str(exc), error_class=exc.error_class) from None
    completion: Completion = getattr(result, "completion", result)
    metrics.llm_requests.labels(llm.name, label, "ok").inc()
    await _record(ctx, completion, _count_usage(completion, label, model, prices), OK)
    tracing.annotate({
        "gen_ai.response.model": completion.model,
        "gen_ai.usage.input_tokens": completion.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.usage.completion_tokens,
    })  # fmt: skip
    ctx.log.info("llm call", **cost_fields(completion))
    return result


def model_label(llm: Provider, requested: str, prices: Mapping[str, Price]) -> str:
    """The `model` label of the LLM metrics: the model asked for when it is the provider's
    configured one or has a price, else `other` — a step can name any model (even from its
    input), and each name would be a new series."""
    return requested if requested == llm.model or requested in prices else "other"


async def _admit(ctx: NodeContext, call: Any) -> None:
    """Fail the step, before anything is sent, when a daily budget of the tenant is spent."""
    try:
        await ctx.usage.admit(ctx.tenant_id)
    except BaseException as exc:
        close = getattr(call, "close", None)
        if close is not None:
            close()  # the call's coroutine never runs: no request is made
        if not isinstance(exc, BudgetSpent):
            raise
        ctx.log.warning("llm call refused", error_class=BUDGET_EXCEEDED, error=str(exc))
        raise FatalStepError(str(exc), error_class=BUDGET_EXCEEDED) from None


async def _record(
    ctx: NodeContext, completion: Completion, cost: float | None, outcome: str
) -> None:
    await ctx.usage.record(LLMCall(
        tenant_id=ctx.tenant_id, run_id=ctx.run_id, workflow_name=ctx.workflow_name,
        step_id=ctx.step_id, attempt=ctx.attempt, provider=completion.provider,
        model=completion.model, calls=completion.calls,
        prompt_tokens=completion.usage.prompt_tokens,
        completion_tokens=completion.usage.completion_tokens, cost_usd=cost, outcome=outcome,
    ))  # fmt: skip


def _count_usage(
    completion: Completion, label: str, requested: str, prices: Mapping[str, Price]
) -> float | None:
    """Tokens and cost under the requested model's label; priced by the requested name, or
    the provider's answer (a dated snapshot of a listed model) when that has no price. Returns
    the cost: None when neither has a price, 0 for the offline provider."""
    labels = (completion.provider, label)
    metrics.llm_tokens.labels(*labels, "prompt").inc(completion.usage.prompt_tokens)
    metrics.llm_tokens.labels(*labels, "completion").inc(completion.usage.completion_tokens)
    if completion.provider == "offline":
        return 0.0
    cost = cost_usd(prices, requested, completion.usage)
    if cost is None:
        cost = cost_usd(prices, completion.model, completion.usage)
    if cost is not None:
        metrics.llm_cost.labels(*labels).inc(cost)
    return cost


def cost_fields(completion: Completion) -> dict[str, Any]:
    return {
        "provider": completion.provider,
        "model": completion.model,
        "usage": completion.usage.as_dict(),
        "latency_ms": completion.latency_ms,
        "calls": completion.calls,
    }


def conversation_of(
    prompt: str | None, messages: list[dict[str, Any]] | None, system: str | None
) -> tuple[Message, ...]:
    if (prompt is None) == (messages is None):
        raise FatalStepError("give either `prompt` or `messages`")
    conversation: list[Message] = []
    if system is not None:
        conversation.append(Message("system", _text(system, "system")))
    if prompt is not None:
        conversation.append(Message("user", _text(prompt, "prompt")))
        return tuple(conversation)
    if not isinstance(messages, list) or not messages:
        raise FatalStepError("`messages` must be a non-empty list of {role, content}")
    for n, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise FatalStepError(f"messages[{n}].role must be one of {', '.join(ROLES)}")
        content = _text(message.get("content"), f"messages[{n}].content")
        conversation.append(Message(role, content))
    return tuple(conversation)


def _labels(labels: Any) -> dict[str, str]:
    if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
        choices = dict.fromkeys(labels, "")
    elif isinstance(labels, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        choices = dict(labels)
    else:
        raise FatalStepError("labels must be a list of names or a map of name to description")
    if not 2 <= len(choices) <= MAX_LABELS:
        raise FatalStepError(f"give between 2 and {MAX_LABELS} labels")
    return choices


def _text(value: Any, name: str = "text") -> str:
    if not isinstance(value, str):
        raise FatalStepError(f"`{name}` must be text")
    return value
