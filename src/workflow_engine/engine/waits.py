"""Steps the engine carries out itself, by waiting durably instead of running a node: `sleep`
here, `wait.event` (`event_waits`), `workflow` (`child_runs`) and `approval` (`approvals`).

    - id: cool_off
      uses: sleep
      with: {seconds: 90}          # or {until: "{{ input.send_at }}"}: ISO 8601, with its zone

A waiting step holds no worker and no connection. Its attempt records `StepWaiting` with the
time it wakes, and its task goes back to the queue, available at that time (the task keeps its
step and attempt, so it is the same unit of work); the run is `waiting` while nothing else of
it runs. Whichever worker claims the task when it is due — this process or another, before or
after a restart — completes the step with `{"until": ...}` as its output. A wake time that
passed while no worker ran fires at the first claim. `seconds` count from when the attempt
began to wait; once that is recorded, a restart neither lengthens nor restarts the wait.

Cancelling a waiting run, or its deadline passing, settles the step at once: no worker holds
it, so the cancel drops its task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from workflow_engine.engine import approvals, child_runs, event_waits

SLEEP = "sleep"
WAIT_EVENT = event_waits.WAIT_EVENT
CHILD = child_runs.WORKFLOW
APPROVAL = approvals.APPROVAL
MAX_SLEEP = timedelta(days=366)
_SLEEP_FIELDS = frozenset({"seconds", "until"})
_NOT_A_TIME = "`until` must be an ISO 8601 time, not {}"


# What `GET /api/v1/workflows/nodes` shows of a `sleep`'s `with`.
SLEEP_ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP.total_seconds(),
                    "description": "How long to wait, from when the step begins waiting."},
        "until": {"type": "string", "format": "date-time",
                  "description": "When to wake: ISO 8601 with its time zone."},
    },
    "oneOf": [{"required": ["seconds"]}, {"required": ["until"]}],
    "additionalProperties": False,
}  # fmt: skip
SLEEP_DESCRIPTION = (
    "Waits durably until a time or for a number of seconds, holding no worker; its output is "
    "the time it woke for."
)


class WaitArgumentError(ValueError):
    """The step's arguments do not name a wake time it can keep."""


@dataclass(frozen=True)
class Primitive:
    """A step the engine carries out itself: what `GET /api/v1/workflows/nodes` shows of it,
    and what checks its `with` before a run (values that are expressions wait for the run)."""

    description: str
    arguments: dict[str, Any]
    problems: Callable[[Mapping[str, Any]], list[str]]


def is_wait(uses: str) -> bool:
    return uses in PRIMITIVES


def argument_problems(uses: str, arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with a wait step's `with`, as far as it can be told before a run."""
    return PRIMITIVES[uses].problems(arguments)


def _sleep_problems(arguments: Mapping[str, Any]) -> list[str]:
    shape = _shape_problem(SLEEP, arguments)
    if shape is not None:
        return [shape]
    [(name, value)] = arguments.items()
    if isinstance(value, str) and "{{" in value:
        return []
    try:
        _wake_time(name, value, datetime.now(UTC))
    except WaitArgumentError as exc:
        return [str(exc)]
    return []


def wake_time(arguments: Mapping[str, Any], started: datetime) -> datetime:
    """When a `sleep` whose attempt started at `started` wakes, from its evaluated arguments."""
    shape = _shape_problem(SLEEP, arguments)
    if shape is not None:
        raise WaitArgumentError(shape)
    [(name, value)] = arguments.items()
    return _wake_time(name, value, started)


def _shape_problem(uses: str, arguments: Mapping[str, Any]) -> str | None:
    unknown = sorted(set(arguments) - _SLEEP_FIELDS)
    if unknown:
        return f"{uses} takes `seconds` or `until`, not {', '.join(map(repr, unknown))}"
    if len(arguments) != 1:
        return f"{uses} takes exactly one of `seconds` and `until`"
    return None


def _wake_time(name: str, value: Any, started: datetime) -> datetime:
    try:
        return _checked_wake_time(name, value, started)
    except (OverflowError, ValueError) as exc:  # a number or a time beyond what Python holds
        if isinstance(exc, WaitArgumentError):
            raise
        raise WaitArgumentError(f"`{name}` is out of range: {_shown(value)}") from None


def _checked_wake_time(name: str, value: Any, started: datetime) -> datetime:
    if name == "seconds":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(float(value)):
            raise WaitArgumentError(f"`seconds` must be a number, not {_shown(value)}")
        if value < 0 or value > MAX_SLEEP.total_seconds():
            raise WaitArgumentError(
                f"`seconds` must be between 0 and {MAX_SLEEP.total_seconds():.0f}, not {value}"
            )
        return started + timedelta(seconds=value)
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise WaitArgumentError(_NOT_A_TIME.format(_shown(value))) from None
    else:
        raise WaitArgumentError(_NOT_A_TIME.format(_shown(value)))
    if at.tzinfo is None:
        raise WaitArgumentError(f"`until` must name its time zone (`Z`, `+02:00`): {_shown(value)}")
    if at - started > MAX_SLEEP:
        raise WaitArgumentError(f"`until` is more than {MAX_SLEEP.days} days away: {_shown(value)}")
    return at.astimezone(UTC)


def _shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


PRIMITIVES: dict[str, Primitive] = {
    SLEEP: Primitive(SLEEP_DESCRIPTION, SLEEP_ARGUMENTS, _sleep_problems),
    WAIT_EVENT: Primitive(
        event_waits.DESCRIPTION, event_waits.ARGUMENTS, event_waits.argument_problems
    ),
    CHILD: Primitive(child_runs.DESCRIPTION, child_runs.ARGUMENTS, child_runs.argument_problems),
    APPROVAL: Primitive(approvals.DESCRIPTION, approvals.ARGUMENTS, approvals.argument_problems),
}
