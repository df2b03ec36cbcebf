"""Definitions are validated before anything runs; each problem names file, step and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workflow_engine.engine import waits
from workflow_engine.engine.catalog import DefinitionCatalog, UnknownWorkflow
from workflow_engine.engine.definitions import InvalidDefinition, load_file, parse
from workflow_engine.nodes import registry

KNOWN = {"transform", "noop"}.__contains__


def _definition(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "example",
        "version": 1,
        "input_schema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "examples": [{"n": 1}],
        },
        "steps": [
            {"id": "first", "uses": "transform", "with": {"n": "{{ input.n }}"}},
            {"id": "second", "uses": "noop", "needs": ["first"],
             "with": {"m": "{{ steps.first.output.n }}"}},
        ],
        "output": {"result": "{{ steps.second.output }}"},
    }  # fmt: skip
    document.update(overrides)
    return document


def _problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidDefinition) as caught:
        parse(document, "flows/example.yaml", KNOWN)
    return [str(problem) for problem in caught.value.problems]


def test_a_valid_definition_parses() -> None:
    definition = parse(_definition(), "flows/example.yaml", KNOWN)
    assert [step.id for step in definition.steps] == ["first", "second"]
    assert definition.step("second").needs == ["first"]
    assert definition.document()["steps"][0]["with"] == {"n": "{{ input.n }}"}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [{"id": "a", "uses": "crm.lookup"}],
            "flows/example.yaml: step 'a': uses: unknown node type 'crm.lookup'",
        ),
        (
            [{"id": "a", "uses": "noop", "needs": ["ghost"]}],
            "flows/example.yaml: step 'a': needs: unknown step 'ghost'",
        ),
        (
            [{"id": "a", "uses": "noop", "needs": ["b"]},
             {"id": "b", "uses": "noop", "needs": ["a"]}],
            "flows/example.yaml: step 'a': needs: cycle: a -> b -> a",
        ),
        (
            [{"id": "a", "uses": "noop", "with": {"x": "{{ input.n + }}"}}],
            "flows/example.yaml: step 'a': with: '{{ input.n + }}': unexpected 'end of template'",
        ),
        (
            [{"id": "a", "uses": "noop"},
             {"id": "b", "uses": "noop", "with": {"x": "{{ steps.a.output }}"}}],
            "flows/example.yaml: step 'b': with: reads steps.a, which is not among its needs",
        ),
        (
            [{"id": "a", "uses": "noop", "if": "input.n >"}],
            "flows/example.yaml: step 'a': if: 'input.n >'",
        ),
        (
            [{"id": "a", "uses": "noop"}, {"id": "a", "uses": "noop"}],
            "flows/example.yaml: step 'a': id: is used by more than one step",
        ),
        (
            [{"id": "Bad-Id", "uses": "noop"}],
            "flows/example.yaml: step 'Bad-Id': id: String should match pattern",
        ),
        (
            [{"id": "a", "uses": "noop", "retry": {"max_attempts": 0}}],
            "flows/example.yaml: step 'a': retry.max_attempts: Input should be greater than",
        ),
        (
            [{"id": "a", "uses": "noop", "wiht": {}}],
            "flows/example.yaml: step 'a': wiht: Extra inputs are not permitted",
        ),
    ],
)  # fmt: skip
def test_each_problem_names_file_step_and_field(steps: list[dict[str, Any]], expected: str) -> None:
    problems = _problems(_definition(steps=steps, output=None))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_schema_problems_name_the_schema_and_its_examples() -> None:
    bad_schema = _problems(_definition(input_schema={"type": "nonsense"}))
    assert any(p.startswith("flows/example.yaml: input_schema: ") for p in bad_schema)
    failing_example = _problems(
        _definition(input_schema={"type": "object", "required": ["n"], "examples": [{}]})
    )
    assert failing_example == [
        "flows/example.yaml: input_schema.examples[0]: 'n' is a required property"
    ]


def test_references_that_do_not_resolve_are_problems() -> None:
    schema = {
        "type": "object",
        "$defs": {"id": {"type": "string"}},
        "properties": {"a": {"$ref": "#/$defs/id"}, "b": {"$ref": "#/$defs/missing"},
                       "c": {"$ref": "https://example.com/schema.json"}},
        "examples": [{"a": "x"}],
    }  # fmt: skip
    problems = _problems(_definition(input_schema=schema))
    assert problems == [
        "flows/example.yaml: input_schema: $ref '#/$defs/missing' does not resolve within "
        "the schema",
        "flows/example.yaml: input_schema: $ref 'https://example.com/schema.json' does not "
        "resolve within the schema",
    ]


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        _definition(
            steps=[
                {"id": "a", "uses": "nope"},
                {"id": "b", "uses": "noop", "needs": ["ghost"]},
            ],
            output=None,
        )
    )
    assert len(problems) == 2


def test_files_load_as_yaml_or_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(_definition()))
    (tmp_path / "b.yaml").write_text("name: [unclosed\n")
    assert load_file(tmp_path / "a.json", KNOWN).name == "example"
    with pytest.raises(InvalidDefinition, match=r"b\.yaml"):
        load_file(tmp_path / "b.yaml", KNOWN)


def test_the_catalog_keeps_versions_and_refuses_conflicts(tmp_path: Path) -> None:
    catalog = DefinitionCatalog(registry)
    steps = [{"id": "only", "uses": "transform", "with": {"v": 1}}]
    catalog.register(_definition(version=1, steps=steps, output=None))
    catalog.register(_definition(version=2, steps=steps, output=None))
    assert catalog.get("example").version == 2
    assert catalog.get("example", 1).version == 1
    assert catalog.versions("example") == [1, 2]
    with pytest.raises(UnknownWorkflow, match="no workflow 'missing'; available: example"):
        catalog.get("missing")
    with pytest.raises(UnknownWorkflow, match="version 9"):
        catalog.get("example", 9)
    changed = [{"id": "only", "uses": "transform", "with": {"v": 2}}]
    with pytest.raises(InvalidDefinition, match="already defined differently"):
        catalog.register(_definition(version=2, steps=changed, output=None))


def test_a_directory_reports_every_broken_file(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(json.dumps(_definition(name="fine", steps=[
        {"id": "only", "uses": "transform"}], output=None)))  # fmt: skip
    (tmp_path / "one.yaml").write_text(json.dumps(_definition(name="one", steps=[
        {"id": "x", "uses": "nope"}], output=None)))  # fmt: skip
    (tmp_path / "two.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(InvalidDefinition) as caught:
        DefinitionCatalog(registry).load_directory(tmp_path)
    sources = {Path(problem.source).name for problem in caught.value.problems}
    assert sources == {"one.yaml", "two.json"}


def test_the_built_in_template_is_valid_and_its_example_passes() -> None:
    catalog = DefinitionCatalog(registry)
    catalog.load_templates()
    template = catalog.get("order_summary")
    assert template.input_schema["examples"]
    assert {step.uses for step in template.steps} == {"transform"}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"seconds": 10**400}, "out of range"),  # JSON allows it; a float cannot hold it
        ({"until": "0001-01-01T00:30:00+01:00"}, "out of range"),  # before year 1 in UTC
        ({"seconds": float("nan")}, "must be a number"),
        ({"seconds": True}, "must be a number"),
        ({"until": "2030-01-01T09:00:00"}, "time zone"),
    ],
)
def test_a_sleep_refuses_values_it_cannot_keep(arguments: dict[str, object], expected: str) -> None:
    [problem] = waits.argument_problems("sleep", arguments)
    assert expected in problem
    with pytest.raises(waits.WaitArgumentError, match=expected):
        waits.wake_time(arguments, datetime(2026, 12, 6, tzinfo=UTC))


def test_no_node_type_may_take_the_name_of_a_step_the_engine_carries_out() -> None:
    async def impostor(ctx: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="engine carries out itself"):
        registry.register("sleep", impostor)
