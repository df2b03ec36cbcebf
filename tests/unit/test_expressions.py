"""Expressions in definitions: JSON types kept, strings kept strings, limits enforced."""

from __future__ import annotations

import re
from typing import Any

import pytest

from workflow_engine.engine import expressions
from workflow_engine.engine.expressions import ExpressionError

CONTEXT: dict[str, Any] = {
    "input": {
        "ticket_id": "12345",
        "count": 3,
        "items": [{"name": "a", "amount": 2.5}, {"name": "b", "amount": 1}],
        "customer": {"name": "Ada", "vip": True},
    },
    "steps": {"lookup": {"output": {"tags": ["billing", "urgent"]}}},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ input.ticket_id }}", "12345"),  # a string of digits stays a string
        ("{{ input.count }}", 3),
        ("{{ input.count * 2 }}", 6),
        ("{{ input.customer }}", {"name": "Ada", "vip": True}),
        ("{{ input.customer.vip }}", True),
        ("{{ steps.lookup.output.tags }}", ["billing", "urgent"]),
        ("{{ input['items'] | sum(attribute='amount') }}", 3.5),
        ("  {{ input.count }}  ", 3),
        ("ticket {{ input.ticket_id }}", "ticket 12345"),  # a template renders a string
        ("{{ input.count }} items", "3 items"),
        ("{% if input.customer.vip %}VIP{% endif %}", "VIP"),
        ("no expressions at all", "no expressions at all"),
        (42, 42),
        (None, None),
        ({"a": ["{{ input.count }}", {"b": "{{ input.ticket_id }}"}]}, {"a": [3, {"b": "12345"}]}),
    ],
)
def test_values_evaluate_with_their_json_types(value: Any, expected: Any) -> None:
    assert expressions.evaluate(value, CONTEXT) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("input.count > 2", True),
        ("{{ input.count > 5 }}", False),
        ("'urgent' in steps.lookup.output.tags", True),
        ("input.customer.vip and input.count == 3", True),
    ],
)
def test_conditions_with_or_without_braces(condition: str, expected: bool) -> None:
    assert expressions.evaluate_condition(condition, CONTEXT) is expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ input.missing }}", "undefined"),
        ("hello {{ input.missing }}", "has no attribute 'missing'"),
        ("{{ 'a' * 10**9 }}", "too large"),
        ("{{ 2 ** 1000 }}", "exponent too large"),
        ("{{ range(10**6) | list }}", "range() is limited"),
        ("{{ ().__class__.__bases__ }}", "is unsafe"),
        ("{{ input.keys() }}", "no attribute 'keys'"),  # JSON keys only, no dict methods
        ("{{ input.count / 0 }}", "division by zero"),
        ("{{ '%(zz)s' % input }}", "no key 'zz'"),  # any error is the expression's
    ],
)
def test_failures_and_limits_are_expression_errors(value: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        expressions.evaluate(value, CONTEXT)


def test_a_runaway_loop_is_stopped_by_the_deadline() -> None:
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(ExpressionError, match=re.escape("took longer than 0.2 s")):
        expressions.evaluate(loops, CONTEXT, timeout=0.2)


def test_checking_finds_syntax_errors_without_evaluating() -> None:
    expressions.check({"ok": "{{ input.anything_at_all }}"})  # not evaluated: no error
    with pytest.raises(ExpressionError, match="unexpected"):
        expressions.check({"bad": ["fine", "{{ 1 + }}"]})
    with pytest.raises(ExpressionError):
        expressions.check_condition("input.count >")


def test_names_used_lists_the_steps_an_expression_reads() -> None:
    used = expressions.names_used(
        {"a": "{{ steps.lookup.output }}", "b": ["x {{ steps['draft'].output.text }}"]}
    )
    assert used == {"lookup", "draft"}
    assert expressions.condition_names_used("steps.check.output.ok") == {"check"}
