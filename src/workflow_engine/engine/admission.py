"""Admission: runs that start only when a limit lets them.

Two limits, both per tenant: `MAX_RUNNING_PER_TENANT` (runs of the tenant under way at once)
and a workflow's `concurrency` (`limit` runs of it at once, per value of its `key` when given).
A run under either is *gated*: its trigger enqueues one `:admit` task instead of its first
steps. A run holds its slot from its admission until it ends — waiting for a timer, an event
or a child included, which is what "one run per ticket" wants. Child runs do not count toward
the tenant's cap (their parent holds a slot already, and a parent waiting for a child that
waits for a slot would never end); their own workflow's `concurrency` applies to them.

The worker that claims an `:admit` task runs a *pass* for the tenant, in one transaction
under the tenant's advisory lock: it records its run as waiting (`run_admissions`), then goes
through the tenant's waiting runs by priority, then age, and admits each that fits both
limits — enqueuing its first steps (copied from its `:admit` task: priority, correlation id,
trace) and deleting its `:admit` task. Its own task, if its run still waits, is parked (due
never). A gated run's end deletes its row and wakes the tenant's oldest parked `:admit` task
(a trigger, migration 0023), whose pass admits whatever fits then. Runs started before a
limit was configured are not counted.

Runs without a limit pay nothing: they are not gated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import run_admissions, step_runs, tasks, workflow_runs
from workflow_engine.db.upsert import upsert
from workflow_engine.engine import queue, replays
from workflow_engine.engine.definitions import WorkflowDefinition

# The first key of the tenants' advisory locks (kept in step with migration 0023).
LOCK_CLASS = 1464161027
MAX_KEY = 200  # characters of a concurrency key kept (longer keys are cut)
PASS_SIZE = 1000  # waiting runs one pass looks at


def gated(definition: WorkflowDefinition, *, capped: bool, child: bool) -> bool:
    """Whether a run of `definition` starts through admission."""
    return definition.concurrency is not None or (capped and not child)


@dataclass(frozen=True)
class Waiting:
    """What a gated run asks for: its slot under the tenant's cap (unless it is a child) and
    under its workflow's `concurrency` for its key."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_name: str
    key: str
    limit: int | None
    counts_toward_cap: bool
    priority: int
    created_at: datetime  # the run's: the waiting go oldest first (within a priority)


async def admit(conn: AsyncConnection, task: queue.Task, waiting: Waiting, cap: int | None) -> bool:
    """The pass for `task`'s tenant (see the module doc); whether `task`'s run was admitted.
    The caller holds `task`; it is finished when admitted, parked when not."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK, {"key": str(waiting.tenant_id)})
    row = {
        "run_id": waiting.run_id, "tenant_id": waiting.tenant_id,
        "workflow_name": waiting.workflow_name, "concurrency_key": waiting.key,
        "concurrency_limit": waiting.limit, "counts_toward_cap": waiting.counts_toward_cap,
        "admitted": False, "priority": waiting.priority, "created_at": waiting.created_at,
    }  # fmt: skip
    await conn.execute(
        upsert(conn, run_admissions)
        .values(row)
        .on_conflict_do_nothing(index_elements=[run_admissions.c.run_id])
    )
    admitted = await _pass(conn, waiting.tenant_id, cap)
    # A pass of another worker may have admitted it while this one waited for the lock.
    if waiting.run_id in admitted or await is_admitted(conn, waiting.run_id):
        await queue.finish(conn, task.id, task.lease_owner)
        return True
    await queue.put_back(conn, task.id, task.lease_owner, queue.NEVER)
    return False


async def _pass(conn: AsyncConnection, tenant_id: uuid.UUID, cap: int | None) -> set[uuid.UUID]:
    """Admit the tenant's waiting runs that fit, by priority then age; the runs admitted."""
    held = (await conn.execute(_HELD, {"tenant_id": tenant_id})).all()
    total = sum(row.n for row in held if row.counts_toward_cap)
    per_key: dict[tuple[str, str], int] = {}
    for row in held:
        slot = (row.workflow_name, row.concurrency_key)
        per_key[slot] = per_key.get(slot, 0) + row.n
    chosen: list[Any] = []
    for row in await conn.execute(_WAITING, {"tenant_id": tenant_id}):
        if row.counts_toward_cap and cap is not None and total >= cap:
            continue
        slot = (row.workflow_name, row.concurrency_key)
        if row.concurrency_limit is not None and per_key.get(slot, 0) >= row.concurrency_limit:
            continue
        chosen.append(row)
        total += 1 if row.counts_toward_cap else 0
        per_key[slot] = per_key.get(slot, 0) + 1
    if not chosen:
        return set()
    runs = [row.run_id for row in chosen]
    await conn.execute(_ADMITTED, [{"admitted_run": run} for run in runs])
    first_steps = []
    starts = (await conn.execute(_STARTS, {"runs": runs})).all()
    reused = await _reused(conn, [s.id for s in starts if s.replay_of_run_id is not None])
    for start in starts:
        for step_id in replays.first_steps(start.definition["steps"], reused.get(start.id, ())):
            first_steps.append(queue.NewTask(
                tenant_id, start.id, step_id, priority=start.priority,
                correlation_id=start.correlation_id, trace_context=start.trace_context,
            ))  # fmt: skip
    await queue.enqueue(conn, first_steps)
    # Other runs' `:admit` tasks have nothing left to do (a worker holding one finds its run
    # admitted and finishes it: its own pass admits nothing new for it).
    await conn.execute(
        delete(tasks).where(
            tasks.c.run_id.in_(runs), tasks.c.step_id == queue.ADMIT, tasks.c.lease_owner.is_(None)
        )
    )
    return set(runs)


async def _reused(conn: AsyncConnection, runs: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """The steps each of these replays reuses: before its admission, its completed ones."""
    found: dict[uuid.UUID, set[str]] = {}
    if runs:
        for run_id, step_id in await conn.execute(_COMPLETED, {"runs": runs}):
            found.setdefault(run_id, set()).add(step_id)
    return found


async def is_admitted(conn: AsyncConnection, run_id: uuid.UUID) -> bool:
    found = await conn.execute(
        select(run_admissions.c.admitted).where(run_admissions.c.run_id == run_id)
    )
    return bool(found.scalar_one_or_none())


_LOCK = select(func.pg_advisory_xact_lock(LOCK_CLASS, func.hashtext(bindparam("key"))))
_TENANT = bindparam("tenant_id", type_=run_admissions.c.tenant_id.type)
_HELD = (
    select(
        run_admissions.c.workflow_name,
        run_admissions.c.concurrency_key,
        run_admissions.c.counts_toward_cap,
        func.count().label("n"),
    )
    .where(run_admissions.c.tenant_id == _TENANT, run_admissions.c.admitted)
    .group_by(
        run_admissions.c.workflow_name,
        run_admissions.c.concurrency_key,
        run_admissions.c.counts_toward_cap,
    )
)
_WAITING = (
    select(run_admissions)
    .where(run_admissions.c.tenant_id == _TENANT, run_admissions.c.admitted.is_(False))
    .order_by(run_admissions.c.priority.desc(), run_admissions.c.created_at)
    .limit(PASS_SIZE)
)
_ADMITTED = (
    update(run_admissions)
    .where(run_admissions.c.run_id == bindparam("admitted_run", type_=run_admissions.c.run_id.type))
    .values(admitted=True)
)
_ADMIT_TASK = tasks.alias("admit_task")
_STARTS = (
    select(
        workflow_runs.c.id,
        workflow_runs.c.definition,
        workflow_runs.c.replay_of_run_id,
        _ADMIT_TASK.c.priority,
        _ADMIT_TASK.c.correlation_id,
        _ADMIT_TASK.c.trace_context,
    )
    .join(
        _ADMIT_TASK,
        and_(_ADMIT_TASK.c.run_id == workflow_runs.c.id, _ADMIT_TASK.c.step_id == queue.ADMIT),
    )
    .where(workflow_runs.c.id.in_(bindparam("runs", expanding=True)))
)
_COMPLETED = select(step_runs.c.run_id, step_runs.c.step_id).where(
    step_runs.c.run_id.in_(bindparam("runs", expanding=True)), step_runs.c.status == "completed"
)
