"""Replaying a run from a step: a new run that reuses what the original's earlier steps
produced and executes from that step on, optionally with another input, model, prompt or
definition version.

**Which steps are reused.** A run's steps form a graph through `needs`. A replay from step S
runs again S, every step that did not complete in the original (failed, skipped, cancelled or
never started), with a new input every step that reads it, and every step that needs one of
those, directly or not; every other step is
*reused*: it completed in the original and nothing it depends on runs again, so its output is
still what its inputs gave. (A completed step that needs a failed `continue_on_error` step
therefore runs again with it: a step never runs before its needs.)

**How a reused step completes.** Not by running: the new run's `WorkflowTriggered` carries a
`replay` block — the original run, the step, the reused steps and their outputs, copied
verbatim from the original's step rows (an LLM step's output holds the text and usage its
provider answered, an `mcp.call` output the tool's data) — and the fold (`run_fold.new_run`)
starts those steps `completed`, with attempt 0 (no attempt of this run made them). No task,
no node call, no MCP or LLM request: the run's first tasks are the steps after them
(`first_steps`). One event, so the trigger's one-statement start is unchanged.

Overrides change the definition the replay runs — `model` and `steps` set `with` arguments of
LLM steps that run again (never where a step acts: an MCP call's target, an approval's
timeout, an agent's tools), `version` takes another version of the workflow from the catalog — and
the result is checked as a definition file is (`definitions.parse`), each problem a 422 naming
its field.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.engine import expressions, waits
from workflow_engine.engine.catalog import DefinitionCatalog, UnknownWorkflow
from workflow_engine.engine.definitions import InvalidDefinition, WorkflowDefinition, parse
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.states import RUN_FINISHED, StepStatus
from workflow_engine.errors import Conflict, InvalidInput
from workflow_engine.nodes import schemas

_BODY = "body"
_MAX_ERRORS = 20


@dataclass(frozen=True)
class Overrides:
    """What a replay changes; every member optional."""

    input: dict[str, Any] | None = None  # replaces the run's input
    version: int | None = None  # another version of the same workflow
    model: str | None = None  # `with.model` of every LLM step that runs again
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # merged into `with`

    def document(self) -> dict[str, Any]:
        """What was asked, as JSON (only what was given): recorded with the replay."""
        given: dict[str, Any] = {"input": self.input, "version": self.version,
                                 "model": self.model}  # fmt: skip
        if self.steps:
            given["steps"] = {step: dict(values) for step, values in self.steps.items()}
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class Replay:
    """What a replay starts: the definition (overrides applied), its input, and the outputs of
    the reused steps, in definition order."""

    of: uuid.UUID
    from_step: str
    definition: WorkflowDefinition
    input: Any
    outputs: dict[str, Any]
    overrides: dict[str, Any]

    def event_data(self) -> dict[str, Any]:
        """The `replay` block of the new run's `WorkflowTriggered`."""
        return {"of": str(self.of), "from_step": self.from_step, "reused": list(self.outputs),
                "outputs": self.outputs, "overrides": self.overrides}  # fmt: skip


def plan(
    original: RunRecord, from_step: str, overrides: Overrides, catalog: DefinitionCatalog
) -> Replay:
    """The replay of `original` from `from_step`: 409 while the original has not finished,
    422 (every problem at once) for a step or override that does not fit. The input is the
    caller's to check against the definition's schema."""
    if original.status not in RUN_FINISHED:
        raise Conflict(f"run {original.id} has not finished (it is {original.status}): "
                       "replay it once it has")  # fmt: skip
    problems = _Problems()
    ran = WorkflowDefinition.model_validate(original.definition)
    target = ran
    if overrides.version is not None and overrides.version != ran.version:
        try:
            target = catalog.get(ran.name, overrides.version)
        except UnknownWorkflow:
            versions = ", ".join(map(str, catalog.versions(ran.name))) or "none"
            problems.add(("overrides", "version"), "replay.unknown_version",
                         f"{ran.name} has no version {overrides.version} here "
                         f"(versions: {versions})")  # fmt: skip
            problems.raise_if_any("the replay's overrides do not fit")
    ids = [step.id for step in target.steps]
    if from_step not in ids:
        if target is not ran and from_step in {step.id for step in ran.steps}:
            problems.add(("overrides", "version"), "replay.unknown_step",
                         f"version {target.version} has no step {from_step!r}")  # fmt: skip
        else:
            problems.add(("from_step",), "replay.unknown_step",
                         f"{target.name} version {target.version} has no step {from_step!r}; "
                         f"its steps: {', '.join(ids)}")  # fmt: skip
        problems.raise_if_any(f"cannot replay run {original.id} from {from_step!r}")
    completed = {s.step_id: s for s in original.steps if s.status == StepStatus.completed}
    if target is not ran:
        _check_version(ran, target, from_step, completed, problems)
    done = {step_id for step_id, s in completed.items()
            if step_id in ids and s.uses == target.step(step_id).uses}  # fmt: skip
    # A new input makes every step that reads it run again: its output came from the old one.
    new_input = overrides.input is not None and overrides.input != original.input
    again = runs_again(target, from_step, done, _reading_input(target) if new_input else set())
    document = _overridden(target, again, overrides, catalog, problems)
    problems.raise_if_any("the replay's overrides do not fit")
    try:
        definition = parse(document, f"replay of run {original.id}", catalog.nodes.__contains__)
    except InvalidDefinition as exc:
        for problem in exc.problems:
            where = (
                ("overrides", "steps", problem.step)
                if problem.step in overrides.steps
                else (("overrides",))
            )
            problems.add(where, "replay.invalid_definition", str(problem))
        problems.raise_if_any("the definition the replay would run is not valid")
        raise InvalidInput(str(exc)) from None  # not reached: every problem was added
    outputs = {step.id: completed[step.id].output for step in definition.steps
               if step.id not in again}  # fmt: skip
    data = overrides.input if overrides.input is not None else original.input
    return Replay(original.id, from_step, definition, data, outputs, overrides.document())


def runs_again(
    definition: WorkflowDefinition,
    from_step: str,
    completed: Collection[str],
    also: Collection[str] = (),
) -> set[str]:
    """The steps a replay from `from_step` runs: it, the steps that did not complete, those
    in `also`, and every step that needs one of those, directly or not."""
    again = {from_step, *also} | {step.id for step in definition.steps if step.id not in completed}
    grew = True
    while grew:  # at most one pass per level of the graph (200 steps at most)
        grew = False
        for step in definition.steps:
            if step.id not in again and any(need in again for need in step.needs):
                again.add(step.id)
                grew = True
    return again


def _reading_input(definition: WorkflowDefinition) -> set[str]:
    """The steps whose arguments or `if` read the run's input."""
    return {
        step.id
        for step in definition.steps
        if "input" in expressions.roots_used(step.with_)
        or (step.if_ is not None and "input" in expressions.condition_roots_used(step.if_))
    }


def first_steps(steps: Iterable[Mapping[str, Any]], reused: Collection[str]) -> list[str]:
    """The steps of a definition document a run starts with: those not reused whose needs
    are all reused (for a run that reuses nothing, the steps that need nothing)."""
    return [
        step["id"] for step in steps
        if step["id"] not in reused and all(need in reused for need in step.get("needs", ()))
    ]  # fmt: skip


def _check_version(
    ran: WorkflowDefinition,
    target: WorkflowDefinition,
    from_step: str,
    completed: Mapping[str, Any],
    problems: _Problems,
) -> None:
    """Another version must use the same node type for every step of it the replay would
    reuse: an output of another kind of step cannot stand in for it. (A step the version
    dropped is simply not part of the replay; one it added runs, with what depends on it.)"""
    kept = {step.id: step.uses for step in target.steps}
    again = runs_again(ran, from_step, completed)
    for step in ran.steps:
        if step.id in again or step.id not in kept or kept[step.id] == step.uses:
            continue
        problems.add(("overrides", "version"), "replay.reused_step_changed",
                     f"step {step.id!r} uses {kept[step.id]} in version {target.version}, not "
                     f"{step.uses}: its output cannot be reused; replay from it or a step it "
                     "needs")  # fmt: skip


def _overridden(
    target: WorkflowDefinition,
    again: set[str],
    overrides: Overrides,
    catalog: DefinitionCatalog,
    problems: _Problems,
) -> dict[str, Any]:
    """`target`'s document with the model and step overrides applied to the steps that run
    again (the model first, so a step's own `model` override wins)."""
    document = target.document()
    by_id = {step["id"]: step for step in document["steps"]}
    if overrides.model is not None:
        llm_steps = [s for s in document["steps"]
                     if s["id"] in again and s["uses"].startswith("llm.")]  # fmt: skip
        if not llm_steps:
            problems.add(("overrides", "model"), "replay.no_llm_step",
                         "no LLM step (llm.*) runs again in this replay")  # fmt: skip
        for step in llm_steps:
            step.setdefault("with", {})["model"] = overrides.model
    for step_id, values in overrides.steps.items():
        where = ("overrides", "steps", step_id)
        if step_id not in by_id:
            problems.add(
                where,
                "replay.unknown_step",
                f"{target.name} version {target.version} has no step {step_id!r}",
            )
            continue
        if step_id not in again:
            problems.add(where, "replay.reused_step",
                         f"step {step_id!r} is reused, not run again: replay from it or from "
                         "a step it needs")  # fmt: skip
            continue
        step = by_id[step_id]
        # Only what an LLM is asked, never where a step acts: a replay may not point an MCP
        # call elsewhere, shorten an approval or widen an agent's tools.
        if not step["uses"].startswith("llm."):
            problems.add(where, "replay.not_an_llm_step",
                         f"only LLM steps' arguments can be overridden; {step_id!r} is "
                         f"{step['uses']}")  # fmt: skip
            continue
        if step["uses"] == "llm.agent" and "tools" in values:
            problems.add((*where, "tools"), "replay.fixed_argument",
                         "an agent's `tools` cannot be overridden: its allow-list is the "
                         "workflow's")  # fmt: skip
            continue
        for name in _unknown_arguments(catalog, step["uses"], values):
            problems.add((*where, name), "replay.unknown_argument",
                         f"{step['uses']} takes no argument {name!r}")  # fmt: skip
        step["with"] = {**step.get("with", {}), **values}
    return document


def _unknown_arguments(
    catalog: DefinitionCatalog, uses: str, values: Mapping[str, Any]
) -> list[str]:
    """The names in `values` the node type does not take (none known for a type that takes
    any, or for the engine's own steps, whose arguments `parse` checks)."""
    if waits.is_wait(uses) or uses not in catalog.nodes:
        return []
    schema = schemas.argument_schema(uses, catalog.nodes.get(uses))
    if schema.get("additionalProperties", True) is not False:
        return []
    return sorted(set(values) - set(schema.get("properties", {})))


class _Problems:
    """422 entries collected before raising, as the request validation shapes them."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, loc: tuple[str | None, ...], kind: str, message: str) -> None:
        self.errors.append({"loc": [_BODY, *loc], "msg": message, "type": kind})

    def raise_if_any(self, detail: str) -> None:
        if self.errors:
            messages = "; ".join(error["msg"] for error in self.errors[:3])
            raise InvalidInput(f"{detail}: {messages}", errors=self.errors[:_MAX_ERRORS])
