"""`workflow` steps: a step that starts another workflow as a child run and waits for it.

    - id: research
      uses: workflow
      with:
        name: knowledge_base          # a template this server has
        version: 2                    # optional: the latest when left out
        data: {question: "{{ input.question }}"}

The child is a run like any other (its own status, events, logs and results), in the same
tenant, started with the parent's priority and correlation id; its status names its `parent`
and the parent's status lists its `children`. The parent step waits for it holding no worker
(its task is back in the queue, due when the child ends) and completes with the child's
output, or fails with the class `child_failed` (retryable: the step's retry policy starts a new
child) or `child_cancelled`. A parent that fails or is cancelled cancels its children that are
still going, and they theirs.

Exactly one child per attempt: its id is derived from the parent's run, step and attempt, so
an attempt started again after its worker died finds the child it started. The child's end
wakes the parent step through a trigger on `workflow_runs` (migration 0021) whichever way the
child ended; the step's check holds its task's row while it reads the child, so a child that
ends meanwhile waits for the check to put the task back, then wakes it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import tasks, workflow_runs
from workflow_engine.engine import queue
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.states import RUN_FINISHED

WORKFLOW = "workflow"
# How deep children may nest: a workflow that starts itself stops here, not never.
MAX_DEPTH = 10
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELDS = frozenset({"name", "version", "data"})
# Child run ids: derived from the parent's run, step and attempt (one child per attempt).
_CHILDREN = uuid.UUID("5a0c2b9e-6f1d-4d53-9d0e-2f6c3b7a8e41")

ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "The workflow to start as a child run."},
        "version": {"type": "integer", "minimum": 1,
                    "description": "Its version (the latest when left out)."},
        "data": {"description": "The child's input, checked against its input schema."},
    },
    "required": ["name"],
    "additionalProperties": False,
}  # fmt: skip
DESCRIPTION = (
    "Starts another workflow as a child run and waits for it, holding no worker; its output "
    "is the child's output."
)


class ChildArgumentError(ValueError):
    """The step's arguments do not name a workflow to start."""


@dataclass(frozen=True)
class ChildCall:
    name: str
    version: int | None
    data: Any


def argument_problems(arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with a `workflow` step's `with` before a run (expressions wait)."""
    unknown = sorted(set(arguments) - _FIELDS)
    if unknown:
        return [f"{WORKFLOW} does not take {', '.join(map(repr, unknown))}"]
    if "name" not in arguments:
        return [f"{WORKFLOW} needs `name`: the workflow to start"]
    problems = []
    name, version = arguments["name"], arguments.get("version")
    if not _expression(name) and not (isinstance(name, str) and _NAME.match(name)):
        problems.append(f"`name` must be a workflow's name: {name!r:.60}")
    if version is not None and not _expression(version) and not _is_version(version):
        problems.append(f"`version` must be a whole number from 1: {version!r:.60}")
    return problems


def parse(arguments: Mapping[str, Any]) -> ChildCall:
    problems = argument_problems(arguments)
    if problems:
        raise ChildArgumentError("; ".join(problems))
    version = arguments.get("version")
    if version is not None and not _is_version(version):
        raise ChildArgumentError(f"`version` must be a whole number from 1: {version!r:.60}")
    return ChildCall(arguments["name"], version, arguments.get("data", {}))


def _expression(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def related(run: RunRecord) -> bool:
    """Whether the run is a child, or may have children (a step of it starts workflows)."""
    return run.parent_run_id is not None or any(
        step.get("uses") == WORKFLOW for step in run.definition["steps"]
    )


def child_id(task: queue.Task) -> uuid.UUID:
    """The child run an attempt of a `workflow` step starts."""
    return uuid.uuid5(_CHILDREN, f"{task.run_id}:{task.step_id}:{task.attempt}")


# --- the tables ----------------------------------------------------------------------------


async def depth(conn: AsyncConnection, run: RunRecord) -> int:
    """How many ancestors `run` has (0: it is no one's child), counted up to `MAX_DEPTH`."""
    count, parent = 0, run.parent_run_id
    while parent is not None and count < MAX_DEPTH:
        count += 1
        parent = (await conn.execute(_PARENT_OF, {"run_id": parent})).scalar_one_or_none()
    return count


async def exists(conn: AsyncConnection, run_id: uuid.UUID) -> bool:
    return (await conn.execute(_EXISTS, {"run_id": run_id})).first() is not None


@dataclass(frozen=True)
class Ended:
    """How the child ended: its status, output and error."""

    status: str
    output: Any
    error: Any


async def check(conn: AsyncConnection, task: queue.Task) -> Ended | None:
    """For a parent step whose task the caller holds: how its child ended, or None when it
    goes on (the task is put back, due when the child ends, which wakes it)."""
    # Hold the task's row first: a child ending from now on waits for this transaction.
    await conn.execute(_HOLD, {"task_id": task.id, "owner": task.lease_owner})
    row = (await conn.execute(_CHILD, {"run_id": child_id(task)})).first()
    if row is not None and row.status in RUN_FINISHED:
        return Ended(row.status, row.output, row.error)
    await queue.put_back(conn, task.id, task.lease_owner, queue.NEVER)
    return None


_RUN_ID = bindparam("run_id", type_=workflow_runs.c.id.type)
_PARENT_OF = select(workflow_runs.c.parent_run_id).where(workflow_runs.c.id == _RUN_ID)
_EXISTS = select(workflow_runs.c.id).where(workflow_runs.c.id == _RUN_ID)
_CHILD = select(workflow_runs.c.status, workflow_runs.c.output, workflow_runs.c.error).where(
    workflow_runs.c.id == _RUN_ID
)
_HOLD = (
    update(tasks)
    .where(
        tasks.c.id == bindparam("task_id", type_=tasks.c.id.type),
        tasks.c.lease_owner == bindparam("owner"),
    )
    .values(claims=tasks.c.claims)
)
