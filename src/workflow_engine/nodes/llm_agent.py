"""`llm.agent`: a model that calls MCP tools, turn after turn, until it answers.

    - id: answer
      uses: llm.agent
      with:
        prompt: "What should we tell the customer of ticket {{ input.ticket_id }}?"
        tools: [helpscout.get_conversation, notion.search_pages]   # or `notion.*`
        max_turns: 6          # model turns, 8 by default
        max_total_tokens: 20000
        stream: true          # the turns' text on the run's live streams as it comes

The step offers the model the tools its `tools` allow-list names (`server.tool`, or
`server.*` for every tool of a server), each with the schema its server lists. A call the
model asks for is refused when it is not on the list, and its arguments are checked against
the tool's schema before the server is called; either way the model is told why, as the
tool's result, and may try again. The loop ends when the model answers without asking for a
tool (the step's output), or fails the step when `max_turns` model turns or
`max_total_tokens` tokens are spent first.

**Durable, turn by turn.** Each model turn and each tool call is recorded in the step's
journal (`StepRecorded` events) as it completes. A later attempt — after a worker was killed,
or a retry — replays what was recorded instead of asking again: a finished tool call is never
made twice, and a recorded model turn is not paid for twice. Only a call that was in flight
when the worker died is made again. A server that is down or times out fails the attempt as
retryable (the step's `retry` policy decides), keeping every call finished before it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from workflow_engine.events.storable import storable_document
from workflow_engine.integrations.llm import ChatRequest, Completion, Message, Usage
from workflow_engine.integrations.llm.types import ToolCall, ToolSpec
from workflow_engine.integrations.mcp import MCPCallError
from workflow_engine.nodes.llm import call_llm, conversation_of, cost_fields, provider_for
from workflow_engine.nodes.registry import FatalStepError, NodeContext, StepError, node

DEFAULT_MAX_TURNS = 8
MAX_TURNS = 50
MAX_TOOLS = 64
# What a tool's result may put into the conversation (the whole of it stays in the journal).
MAX_RESULT_CHARS = 20_000
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Tool:
    server: str
    tool: str
    spec: ToolSpec
    validator: Draft202012Validator


@node("llm.agent")
async def agent(
    ctx: NodeContext,
    *,
    tools: list[str],
    prompt: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    system: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_total_tokens: int | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    if not isinstance(stream, bool):
        raise FatalStepError("`stream` must be true or false")
    turns_allowed = _bounded("max_turns", max_turns, 1, MAX_TURNS)
    token_limit = (
        None
        if max_total_tokens is None
        else _bounded("max_total_tokens", max_total_tokens, 1, 10**9)
    )
    conversation = list(conversation_of(prompt, messages, system))
    offered = await _offered_tools(ctx, tools)
    llm = provider_for(ctx, provider)
    journal = await ctx.journal.entries()
    recorded_turns = {e["turn"]: e for e in journal if e.get("kind") == "turn"}
    recorded_calls = {(e["turn"], e["index"]): e for e in journal if e.get("kind") == "tool"}
    # A run retried after the agent ran out of turns or tokens goes on with a fresh allowance:
    # the turns before the last limit are replayed, neither asked nor counted again.
    base = max((e["turn"] for e in journal if e.get("kind") == "limit"), default=0)
    specs = tuple(tool.spec for tool in offered.values())
    spent, counted, latency, calls = Usage(), Usage(), 0.0, 0
    answered: dict[str, Any] | None = None
    made: list[dict[str, Any]] = []
    last = base
    for turn in range(1, base + turns_allowed + 1):
        entry = recorded_turns.get(turn)
        if entry is None:
            if token_limit is not None and counted.total_tokens >= token_limit:
                break
            completion: Completion = await call_llm(ctx, llm, model, llm.chat(ChatRequest(
                tuple(conversation), model=model, temperature=temperature,
                max_tokens=max_tokens, tools=specs,
                on_delta=ctx.deltas.publish if stream else None)))  # fmt: skip
            entry = _turn_entry(turn, completion)
            await ctx.journal.record(entry)
        else:
            ctx.log.info("llm turn replayed from the journal", turn=turn)
        last = turn
        used = Usage(entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"])
        spent += used
        counted += used if turn > base else Usage()
        latency += entry["latency_ms"]
        calls += entry["calls"]
        asked = tuple(ToolCall(c["id"], c["name"], c["arguments"], c.get("malformed"))
                      for c in entry["tool_calls"])  # fmt: skip
        conversation.append(Message("assistant", entry["text"], tool_calls=asked))
        if not asked:
            answered = entry
            break
        for index, call in enumerate(asked):
            done = recorded_calls.get((turn, index))
            if done is None:
                done = await _use_tool(ctx, offered, call, turn, index)
                await ctx.journal.record(done)
            made.append(_shown_call(done))
            conversation.append(Message("tool", done["content"], tool_call_id=call.id))
    if answered is None:
        over_tokens = token_limit is not None and counted.total_tokens >= token_limit
        limit = (
            f"max_total_tokens ({token_limit})" if over_tokens else f"max_turns ({turns_allowed})"
        )
        await ctx.journal.record({"kind": "limit", "turn": last})
        raise FatalStepError(
            f"the agent did not answer within {limit}: {counted.total_tokens} tokens over "
            f"{last - base} turns, {len(made)} tool calls",
            error_class="agent_limit",
        )
    final = Completion(
        answered["text"], answered["provider"], answered["model"], spent,
        latency_ms=round(latency, 3), calls=calls,
    )  # fmt: skip
    return {"text": final.text, "turns": answered["turn"], "tool_calls": made,
            **cost_fields(final)}  # fmt: skip


async def _offered_tools(ctx: NodeContext, allowed: Any) -> dict[str, Tool]:
    """The tools the allow-list names, by the name the model knows each by, with their
    schemas as their servers list them."""
    if not isinstance(allowed, list) or not allowed or not all(isinstance(t, str) for t in allowed):
        raise FatalStepError("`tools` must be a non-empty list of `server.tool` or `server.*`")
    wanted: dict[str, list[str]] = {}
    for name in allowed:
        server, dot, tool = name.partition(".")
        if not dot or not server or not tool:
            raise FatalStepError(f"`tools`: {name!r} is not `server.tool` or `server.*`")
        wanted.setdefault(server, []).append(tool)
    offered: dict[str, Tool] = {}
    for server, names in wanted.items():
        try:
            listed = await ctx.mcp.list_tools(server, tenant_id=ctx.tenant_id)
        except MCPCallError as exc:
            kind = StepError if exc.retryable else FatalStepError
            raise kind(str(exc), error_class=exc.error_class) from None
        by_name = {t["name"]: t for t in listed}
        chosen = list(by_name) if "*" in names else names
        for tool in chosen:
            if tool not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                raise FatalStepError(f"`tools`: {server} has no tool {tool!r} (it has: {known})")
            offered_name = _model_name(server, tool)
            same = offered.get(offered_name)
            if same is not None and (same.server, same.tool) != (server, tool):
                raise FatalStepError(
                    f"`tools`: {same.server}.{same.tool} and {server}.{tool} would both be "
                    f"offered as {offered_name!r}; allow one of them"
                )
            offered[offered_name] = _tool(server, by_name[tool], offered_name)
    if len(offered) > MAX_TOOLS:
        raise FatalStepError(f"`tools` offers {len(offered)} tools; at most {MAX_TOOLS}")
    return offered


def _tool(server: str, listed: dict[str, Any], offered_name: str) -> Tool:
    schema = listed.get("input_schema") or {"type": "object"}
    try:
        validator = Draft202012Validator(schema)
        validator.check_schema(schema)
    except SchemaError as exc:
        raise FatalStepError(
            f"{server}.{listed['name']} lists an invalid input schema: {exc.message}"
        ) from None
    description = listed.get("description") or f"{listed['name']} of {server}"
    spec = ToolSpec(offered_name, f"{description} (MCP server {server})", schema)
    return Tool(server, listed["name"], spec, validator)


def _model_name(server: str, tool: str) -> str:
    """`server__tool`, in the characters and length every provider accepts for a name."""
    return _TOOL_NAME.sub("_", f"{server}__{tool}")[:64]


async def _use_tool(
    ctx: NodeContext, offered: dict[str, Tool], call: ToolCall, turn: int, index: int
) -> dict[str, Any]:
    """Call the tool the model asked for, or tell it why not: the journal entry of the call,
    made storable (a tool may answer what the event log cannot hold: a NUL, a lone
    surrogate), so that recording a finished call can never fail and have it made again."""
    entry: dict[str, Any] = storable_document(await _tool_result(ctx, offered, call, turn, index))
    return entry


async def _tool_result(
    ctx: NodeContext, offered: dict[str, Tool], call: ToolCall, turn: int, index: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": "tool", "turn": turn, "index": index, "id": call.id,
                             "name": call.name, "arguments": call.arguments}  # fmt: skip
    tool = offered.get(call.name)
    if tool is None:
        ctx.log.warning("agent asked for a tool it is not allowed", tool=call.name)
        allowed = ", ".join(sorted(offered))
        return {
            **entry,
            "ok": False,
            "refused": True,
            "content": f"error: tool {call.name!r} is not allowed here; use one of {allowed}",
        }
    entry.update(server=tool.server, tool=tool.tool)
    if call.malformed is not None:
        return {
            **entry,
            "ok": False,
            "content": "error: the arguments are not a JSON object; send them as one",
        }
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
        for e in tool.validator.iter_errors(call.arguments)
    ]
    if problems:
        content = "error: the arguments do not match the tool's schema: " + "; ".join(problems[:5])
        return {**entry, "ok": False, "content": content}
    try:
        result = await ctx.mcp.call_tool(
            tool.server, tool.tool, call.arguments, None, ctx.tenant_id
        )
    except MCPCallError as exc:
        if exc.retryable:  # the server may answer later: this attempt ends, its calls are kept
            raise StepError(str(exc), error_class=exc.error_class) from None
        ctx.log.warning("agent tool call failed", server=tool.server, tool=tool.tool,
                        error_class=exc.error_class)  # fmt: skip
        return {**entry, "ok": False, "content": f"error: {exc}"}
    ctx.log.info("agent tool call", server=tool.server, tool=tool.tool,
                 latency_ms=result.latency_ms)  # fmt: skip
    return {**entry, "ok": True, "data": result.data, "content": result.text[:MAX_RESULT_CHARS]}


def _turn_entry(turn: int, completion: Completion) -> dict[str, Any]:
    entry: dict[str, Any] = storable_document({
        "kind": "turn", "turn": turn, "text": completion.text,
        "tool_calls": [
            {**call.as_dict(), **({"malformed": call.malformed} if call.malformed else {})}
            for call in completion.tool_calls
        ],
        "provider": completion.provider, "model": completion.model,
        "usage": completion.usage.as_dict(), "latency_ms": completion.latency_ms,
        "calls": completion.calls,
    })  # fmt: skip
    return entry


def _shown_call(entry: dict[str, Any]) -> dict[str, Any]:
    """A tool call as the step's output lists it."""
    shown = {"turn": entry["turn"], "server": entry.get("server"),
             "tool": entry.get("tool", entry["name"]), "arguments": entry["arguments"],
             "ok": entry["ok"]}  # fmt: skip
    if entry.get("refused"):
        shown["refused"] = True
    if entry["ok"]:
        data = entry.get("data")
        # The step's output keeps small results; a large one stays in the journal only.
        if len(json.dumps(data, ensure_ascii=False)) <= MAX_RESULT_CHARS:
            shown["data"] = data
        else:
            shown["data_omitted"] = True
    else:
        shown["error"] = entry["content"].removeprefix("error: ")
    return shown


def _bounded(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FatalStepError(f"`{name}` must be a whole number from {low} to {high}")
    return value
