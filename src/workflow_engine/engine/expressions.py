"""Expressions in workflow definitions: sandboxed Jinja2, with JSON types kept where they can be.

- A string that is one expression and nothing else — `"{{ input.count }}"` — evaluates to the
  expression's value with its type: a number stays a number, an object an object, and the
  string `"12345"` stays a string (Jinja's `NativeEnvironment` would turn it into an integer:
  pitfall 10 in docs/architecture.md; single expressions are compiled with
  `compile_expression` instead).
- Any other string containing `{{ }}` or `{% %}` is a template and renders to a string.
- Dicts and lists are evaluated member by member; other values are returned as they are.
- `if` conditions may be written with or without the braces.

The environment is `ImmutableSandboxedEnvironment` (no attribute access to internals, no
mutation of the context). What the sandbox does not bound is bounded here: `*`, `**` and `+`
refuse results over `MAX_OUTPUT_CHARS`, `range()` is capped, the result's JSON size is capped,
and evaluation runs under a deadline enforced by a trace function, so `{% for %}` nested over
large data cannot hold a worker.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 1_000_000
MAX_RANGE = 10_000
DEFAULT_TIMEOUT = 1.0

_SINGLE = re.compile(r"^\s*\{\{(?P<body>.*)\}\}\s*$", re.DOTALL)
_TEMPLATE_MARK = re.compile(r"\{\{|\{%")


class ExpressionError(Exception):
    """An expression that does not parse, fails, or exceeds a limit. The message says which."""


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+"])

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The context is JSON: `input.items` means the key "items", never `dict.items`.
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_number(right) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if (
                    isinstance(sized, str | list | tuple)
                    and isinstance(count, int)
                    and len(sized) * count > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("the result would be too large")
        if (
            operator == "+"
            and isinstance(left, str | list | tuple)
            and isinstance(right, str | list | tuple)
            and len(left) + len(right) > MAX_OUTPUT_CHARS
        ):
            raise SecurityError("the result would be too large")
        return super().call_binop(context, operator, left, right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded_range(*args: int) -> range:
    span = range(*args)
    if len(span) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return span


# StrictUndefined: a missing name or key is an error, not a silent empty string.
_ENV = _BoundedEnvironment(autoescape=False, undefined=StrictUndefined)
_ENV.globals = {"range": _bounded_range, "dict": dict}
_ENV.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)


def check(value: Any) -> None:
    """Parse every expression in `value` without evaluating it; raise `ExpressionError` for
    the first that does not parse (definitions are validated before anything runs)."""
    if isinstance(value, str):
        _parse(value)
    elif isinstance(value, Mapping):
        for member in value.values():
            check(member)
    elif isinstance(value, list):
        for member in value:
            check(member)


def check_condition(condition: str) -> None:
    _parse_condition(condition)


def names_used(value: Any) -> set[str]:
    """The `steps.<id>` ids an expression refers to (to check them against `needs`)."""
    found: set[str] = set()
    for text in _strings(value):
        if not _TEMPLATE_MARK.search(text):
            continue
        tree = _ENV.parse(text)
        for getattr_node in tree.find_all(nodes.Getattr):
            target = getattr_node.node
            if isinstance(target, nodes.Name) and target.name == "steps":
                found.add(getattr_node.attr)
        for getitem in tree.find_all(nodes.Getitem):
            target = getitem.node
            if (
                isinstance(target, nodes.Name)
                and target.name == "steps"
                and isinstance(getitem.arg, nodes.Const)
            ):
                found.add(str(getitem.arg.value))
    return found


def condition_names_used(condition: str) -> set[str]:
    return names_used(_as_template(condition))


def roots_used(value: Any) -> set[str]:
    """The context names (`input`, `steps`, `env`, ...) an expression reads."""
    return {
        name.name
        for text in _strings(value)
        if _TEMPLATE_MARK.search(text)
        for name in _ENV.parse(text).find_all(nodes.Name)
        if name.ctx == "load"
    }


def condition_roots_used(condition: str) -> set[str]:
    return roots_used(_as_template(condition))


def evaluate(value: Any, context: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """`value` with every expression in it evaluated against `context` (see the module doc).

    Runs synchronously under a deadline: call it from a worker thread when the caller must
    stay responsive (`asyncio.to_thread`).
    """
    if has_statements(value):
        result = _with_deadline(lambda: _evaluate(value, context), timeout)
    else:  # no statements, so no loops: the size caps bound the work, and tracing is costly
        result = _evaluate(value, context)
    _check_size(result)
    return result


def has_statements(value: Any) -> bool:
    """Whether `value` holds a template with statements (`{% %}`): only those can loop."""
    return any("{%" in text for text in _strings(value))


def may_be_costly(value: Any) -> bool:
    """Whether evaluating `value` could take long: statements loop, and a filter is one C
    call the size caps only check afterwards (`replace` can build 9 MB from 6 kB)."""
    return any("{%" in text or "|" in text for text in _strings(value))


def evaluate_condition(condition: str, context: Mapping[str, Any]) -> bool:
    compiled = _parse_condition(condition)  # one expression, no loops: no deadline needed
    return bool(_call(compiled, context, source=condition))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for member in value.values() for text in _strings(member)]
    if isinstance(value, list):
        return [text for member in value for text in _strings(member)]
    return []


def _as_template(condition: str) -> str:
    return condition if _SINGLE.match(condition) else "{{ " + condition + " }}"


def _parse(text: str) -> Any:
    single = _SINGLE.match(text)
    try:
        if single and not _TEMPLATE_MARK.search(single.group("body")):
            return _ENV.compile_expression(single.group("body"), undefined_to_none=False)
        if _TEMPLATE_MARK.search(text):
            return _ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"{text!r}: {exc.message}") from None
    return None


def _parse_condition(condition: str) -> Any:
    single = _SINGLE.match(condition)
    body = single.group("body") if single else condition
    try:
        return _ENV.compile_expression(body, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"{condition!r}: {exc.message}") from None


def _evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        compiled = _parse(value)
        if compiled is None:
            return value
        if hasattr(compiled, "render"):
            try:
                rendered = compiled.render(context)
            except Exception as exc:  # whatever the template does wrong is the template's error
                raise ExpressionError(f"{value!r}: {_describe(exc)}") from None
            if len(rendered) > MAX_OUTPUT_CHARS:
                raise ExpressionError(f"{value!r}: the result is larger than allowed")
            return rendered
        return _call(compiled, context, source=value)
    if isinstance(value, Mapping):
        return {key: _evaluate(member, context) for key, member in value.items()}
    if isinstance(value, list):
        return [_evaluate(member, context) for member in value]
    return value


def _call(compiled: Any, context: Mapping[str, Any], source: str = "") -> Any:
    try:
        result = compiled(**context)
    except Exception as exc:  # whatever the expression does wrong is the expression's error
        message = _describe(exc)
        raise ExpressionError(f"{source!r}: {message}" if source else message) from None
    if isinstance(result, Undefined):
        raise ExpressionError(f"{source!r} is undefined" if source else "undefined value")
    return result


def _check_size(result: Any) -> None:
    try:
        encoded = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"the result is not JSON: {exc}") from None
    if len(encoded) > MAX_OUTPUT_CHARS:
        raise ExpressionError("the result is larger than allowed")
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpressionError("the result is not a finite number")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r}" if exc.args else "missing key"
    return str(exc) or type(exc).__name__


class _Deadline(BaseException):
    """Raised from the trace function; a BaseException so template code cannot swallow it."""


def _with_deadline(work: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout

    def trace(_frame: FrameType, _event: str, _arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _Deadline
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        return work()
    except _Deadline:
        raise ExpressionError(f"evaluation took longer than {timeout:g} s") from None
    finally:
        sys.settrace(previous)
