"""Workflow definitions: their shape, their validation, and where they come from.

A definition is data (YAML or JSON): `name`, `version`, `description`, `input_schema`,
`steps` and `output`. `validate` checks everything that can be checked before a run starts —
unknown node types, unknown or cyclic `needs`, expressions that do not parse or that read a
step outside their `needs`, an input schema that is not JSON Schema or whose examples fail it —
and names the file, step and field of each problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from workflow_engine.engine import expressions, waits

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_STEPS = 200
_SCHEMA_URI = "urn:workflow-engine:input-schema"

# libyaml's safe loader when PyYAML was built with it (its wheels are): the same documents,
# parsed about eight times faster than in Python — every process start parses the templates.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RetryPolicy(BaseModel):
    """Attempts and exponential backoff with jitter: delay n = min(initial_delay * backoff^(n-1),
    max_delay), spread by ±jitter. `retry_on` limits retries to these error classes."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1, le=100)
    initial_delay: float = Field(1.0, ge=0, le=3600, description="Seconds before attempt 2.")
    backoff: float = Field(2.0, ge=1, le=10)
    max_delay: float = Field(300.0, ge=0, le=86400)
    jitter: float = Field(0.1, ge=0, le=1, description="Fraction of the delay, either way.")
    retry_on: list[str] | None = Field(None, description="Error classes to retry; None: all.")


class StepDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=STEP_ID_PATTERN)
    uses: str = Field(min_length=1, max_length=100)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    if_: str | None = Field(None, alias="if", max_length=2000)
    retry: RetryPolicy | None = None
    timeout: float | None = Field(None, gt=0, le=86400, description="Seconds per attempt.")
    continue_on_error: bool = False
    # A step whose needs were skipped is skipped too, unless it opts out here.
    run_if_needs_skipped: bool = False


class Concurrency(BaseModel):
    """At most `limit` runs of the workflow at once in a tenant — per value of `key` (an
    expression of the input, e.g. `{{ input.ticket_id }}`) when given; the others wait
    queued, oldest first."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(1, ge=1, le=10_000)
    key: str | None = Field(None, max_length=1000, description="An expression of `input`.")


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(1, ge=1, le=1_000_000)
    description: str = Field("", max_length=2000)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    steps: list[StepDefinition] = Field(min_length=1, max_length=MAX_STEPS)
    output: Any = None
    timeout: float | None = Field(None, gt=0, le=7 * 86400, description="Seconds per run.")
    concurrency: Concurrency | None = None

    def step(self, step_id: str) -> StepDefinition:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def document(self) -> dict[str, Any]:
        """The definition as stored with each run (what pins the run to this version)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class DefinitionProblem:
    source: str
    step: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.step:
            where += f": step {self.step!r}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class InvalidDefinition(Exception):
    def __init__(self, problems: list[DefinitionProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def parse(document: Any, source: str, known_nodes: Callable[[str], bool]) -> WorkflowDefinition:
    """A validated definition from parsed YAML/JSON, or `InvalidDefinition` with every problem."""
    try:
        definition = WorkflowDefinition.model_validate(document)
    except ValidationError as exc:
        raise InvalidDefinition(_shape_problems(document, exc, source)) from None
    problems = validate(definition, source, known_nodes)
    if problems:
        raise InvalidDefinition(problems)
    return definition


def load_file(path: Path, known_nodes: Callable[[str], bool]) -> WorkflowDefinition:
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix == ".json" else yaml.load(text, _YAML_LOADER)  # noqa: S506
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidDefinition([DefinitionProblem(str(path), None, None, message)]) from None
    return parse(document, str(path), known_nodes)


def validate(
    definition: WorkflowDefinition, source: str, known_nodes: Callable[[str], bool]
) -> list[DefinitionProblem]:
    problems: list[DefinitionProblem] = []

    def problem(step: str | None, field: str | None, message: str) -> None:
        problems.append(DefinitionProblem(source, step, field, message))

    ids = [step.id for step in definition.steps]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problem(duplicate, "id", "is used by more than one step")
    known_ids = set(ids)
    for step in definition.steps:
        if waits.is_wait(step.uses):
            for message in waits.argument_problems(step.uses, step.with_):
                problem(step.id, "with", message)
        elif not known_nodes(step.uses):
            problem(step.id, "uses", f"unknown node type {step.uses!r}")
        for need in step.needs:
            if need not in known_ids:
                problem(step.id, "needs", f"unknown step {need!r}")
            elif need == step.id:
                problem(step.id, "needs", "a step cannot need itself")
    cycle = _find_cycle(definition.steps)
    if cycle:
        problem(cycle[0], "needs", "cycle: " + " -> ".join(cycle))
    ancestors = _ancestors(definition.steps) if not cycle else {}
    for step in definition.steps:
        _check_expressions(step.id, "with", step.with_, ancestors.get(step.id), problem)
        if step.if_ is not None:
            try:
                expressions.check_condition(step.if_)
                used = expressions.condition_names_used(step.if_)
            except expressions.ExpressionError as exc:
                problem(step.id, "if", str(exc))
            else:
                _check_reach(step.id, "if", used, ancestors.get(step.id), problem)
    _check_expressions(None, "output", definition.output, known_ids, problem)
    try:
        Draft202012Validator.check_schema(definition.input_schema)
    except SchemaError as exc:
        problem(None, "input_schema", exc.message)
    else:
        unresolved = _unresolvable_refs(definition.input_schema)
        for ref in unresolved:
            problem(None, "input_schema", f"$ref {ref!r} does not resolve within the schema")
        validator = Draft202012Validator(definition.input_schema)
        for index, example in enumerate(definition.input_schema.get("examples", [])):
            if unresolved:
                break
            for error in validator.iter_errors(example):
                problem(None, f"input_schema.examples[{index}]", error.message)
    return problems


def _unresolvable_refs(schema: dict[str, Any]) -> list[str]:
    """Every `$ref` that does not resolve inside the schema itself: nothing is fetched, so a
    remote or dangling reference would fail only when some input reaches it."""
    resolver = (
        Registry()
        .with_resource(_SCHEMA_URI, DRAFT202012.create_resource(schema))
        .resolver(_SCHEMA_URI)
    )
    unresolved = []
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            unresolved.append(ref)
    return unresolved


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for member in value.values() for ref in _refs(member)]
    if isinstance(value, list):
        return [ref for member in value for ref in _refs(member)]
    return []


def _check_expressions(
    step: str | None,
    field: str,
    value: Any,
    reachable: set[str] | None,
    problem: Callable[[str | None, str | None, str], None],
) -> None:
    try:
        expressions.check(value)
        used = expressions.names_used(value)
    except expressions.ExpressionError as exc:
        problem(step, field, str(exc))
        return
    _check_reach(step, field, used, reachable, problem)


def _check_reach(
    step: str | None,
    field: str,
    used: set[str],
    reachable: set[str] | None,
    problem: Callable[[str | None, str | None, str], None],
) -> None:
    if reachable is None:
        return
    for name in sorted(used - reachable):
        problem(step, field, f"reads steps.{name}, which is not among its needs (direct or not)")


def _find_cycle(steps: Iterable[StepDefinition]) -> list[str] | None:
    graph = {step.id: [n for n in step.needs if n != step.id] for step in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for need in graph.get(node, []):
            if need not in graph:
                continue
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state and (found := visit(need)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def _ancestors(steps: list[StepDefinition]) -> dict[str, set[str]]:
    needs = {step.id: set(step.needs) for step in steps}
    result: dict[str, set[str]] = {}

    def of(node: str) -> set[str]:
        if node not in result:
            found: set[str] = set()
            for need in needs.get(node, set()):
                found |= {need, *of(need)}
            result[node] = found
        return result[node]

    for step in steps:
        of(step.id)
    return result


def _shape_problems(document: Any, exc: ValidationError, source: str) -> list[DefinitionProblem]:
    problems = []
    for error in exc.errors():
        location = list(error["loc"])
        step = None
        if len(location) >= 2 and location[0] == "steps" and isinstance(location[1], int):
            raw_steps = document.get("steps") if isinstance(document, dict) else None
            raw = raw_steps[location[1]] if isinstance(raw_steps, list) else None
            step = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") else None
            step = step or f"#{location[1] + 1}"
            location = location[2:]
        field = ".".join(str(part) for part in location) or None
        problems.append(DefinitionProblem(source, step, field, error["msg"]))
    return problems
