"""The task queue: every statement on `tasks` lives here.

A task is one attempt of one step (or a run-level job: `:finish` evaluates a finished run's
output, `:deadline` enforces its timeout). Guarantees:

- **Claims** are atomic: on PostgreSQL `FOR UPDATE SKIP LOCKED` lets claimers pass over each
  other's rows; on SQLite, where that clause does not exist (pitfall 1 in docs/architecture.md), one
  `UPDATE ... RETURNING` over a subquery claims, and writers are serialised anyway.
- **Leases** are compared with the database's clock on PostgreSQL (pitfall 8; every worker
  machine agrees on it), with the one process's clock on SQLite. An expired lease makes the
  task claimable again.
- **Finishing** deletes the task only while the caller still holds its lease, inside the
  transaction that records the outcome: a worker that lost its lease records nothing, so a
  step's outcome is recorded exactly once even though the step may run more than once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Integer,
    Interval,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from workflow_engine.db.database import announce
from workflow_engine.db.tables import tasks, tenant_turns, tenants
from workflow_engine.db.types import UTCDateTime
from workflow_engine.db.upsert import upsert

FINISH = ":finish"
DEADLINE = ":deadline"
CANCEL = ":cancel"  # cancel the run: its parent ended (queued by a trigger, migration 0021)
ADMIT = ":admit"  # start the run once a limit lets it (engine/admission.py)
RUN_LEVEL_TASKS = (FINISH, DEADLINE, CANCEL, ADMIT)
# When a task that waits for something other than time is due: never, short of a wake-up.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
# What a transaction that made tasks ready marks itself with (`Database.on_commit`), and the
# PostgreSQL channel that tells other processes' workers.
TASKS_READY = "tasks.ready"
NOTIFY_CHANNEL = "workflow_engine_tasks"
# Claims after which a task whose handling keeps failing unexpectedly is failed for good.
MAX_CLAIMS = 20  # the default of WORKER_MAX_CLAIMS
# A run's `:finish` and `:deadline` go before every step, whatever the runs' priorities
# (which the API keeps within ±100): a run's end must not wait behind other runs' work.
RUN_LEVEL_PRIORITY = 1000

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewTask:
    tenant_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int = 1
    available_at: datetime | None = None  # None: now
    priority: int = 0
    correlation_id: str | None = None
    trace_context: dict[str, str] | None = None  # W3C headers of the trace it continues


@dataclass(frozen=True)
class Task:
    id: uuid.UUID
    tenant_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int
    lease_owner: str
    correlation_id: str | None
    claims: int
    available_at: datetime
    trace_context: dict[str, str] | None
    priority: int = 0  # a step's: its run's, given at trigger

    def follow_on(self, step_id: str, **fields: Any) -> NewTask:
        """A task of the same run that carries on this one's correlation id, trace and
        priority (unless `fields` say otherwise)."""
        carried = {"correlation_id": self.correlation_id, "trace_context": self.trace_context,
                   "priority": self.priority}  # fmt: skip
        return NewTask(self.tenant_id, self.run_id, step_id, **{**carried, **fields})


_TASK_COLUMNS = (
    tasks.c.id,
    tasks.c.tenant_id,
    tasks.c.run_id,
    tasks.c.step_id,
    tasks.c.attempt,
    tasks.c.lease_owner,
    tasks.c.correlation_id,
    tasks.c.claims,
    tasks.c.available_at,
    tasks.c.trace_context,
    tasks.c.priority,
)


def now(conn: AsyncConnection) -> ColumnElement[Any]:
    """The clock leases are measured by (see the module doc)."""
    if conn.dialect.name == "postgresql":
        return func.clock_timestamp()
    return literal(datetime.now(UTC), UTCDateTime())


async def enqueue(conn: AsyncConnection, new_tasks: Sequence[NewTask]) -> None:
    """Add tasks; one already queued for the same step and attempt is left as it is."""
    if not new_tasks:
        return
    await conn.execute(_insert(conn, new_tasks, {}))
    await announce(conn, TASKS_READY, NOTIFY_CHANNEL)


async def enqueue_leased(
    conn: AsyncConnection, new_tasks: Sequence[NewTask], owner: str, lease: timedelta
) -> list[Task]:
    """Add tasks already leased to `owner`, who will run them right after this transaction
    commits: a worker hands itself the steps its outcome made ready, without a claim or a
    wake-up. If it dies first, the lease expires and the tasks are claimable as any other.
    Returns the tasks added (one already queued for the same step and attempt is not)."""
    if not new_tasks:
        return []
    leased = {"lease_owner": owner, "lease_expires_at": _expiry(conn, lease), "claims": 1}
    result = await conn.execute(_insert(conn, new_tasks, leased).returning(*_TASK_COLUMNS))
    return [Task(**row._mapping) for row in result]


def _insert(conn: AsyncConnection, new_tasks: Sequence[NewTask], extra: dict[str, Any]) -> Any:
    created = datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": task.tenant_id,
            "run_id": task.run_id,
            "step_id": task.step_id,
            "attempt": task.attempt,
            "available_at": task.available_at or created,
            "priority": task.priority,
            "correlation_id": task.correlation_id,
            "trace_context": task.trace_context,
            "created_at": created,
            **extra,
        }
        for task in new_tasks
    ]
    return (
        upsert(conn, tasks)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[tasks.c.run_id, tasks.c.step_id, tasks.c.attempt])
    )


def _claimable(moment: ColumnElement[Any]) -> ColumnElement[bool]:
    """Ready at `moment`: due, and not leased (or its lease expired)."""
    return and_(
        tasks.c.available_at <= moment,
        or_(tasks.c.lease_expires_at.is_(None), tasks.c.lease_expires_at < moment),
    )


async def claim(conn: AsyncConnection, owner: str, limit: int, lease: timedelta) -> list[Task]:
    """Lease up to `limit` ready tasks to `owner`, taking turns between tenants: every
    tenant's first task (its highest priority, then its oldest) before any tenant's second,
    and within a turn the tenant served longest ago first. A tenant with a backlog of
    thousands delays another tenant's next task by about one task, not by its backlog."""
    params: dict[str, Any] = {"limit": limit, "owner": owner}
    if conn.dialect.name == "postgresql":
        params["lease"] = lease
    else:
        moment = datetime.now(UTC)
        params.update(now=moment, expiry=moment + lease)
    result = await conn.execute(_claim_statement(conn), params)
    claimed = [Task(**row._mapping) for row in result]
    served = Counter(task.tenant_id for task in claimed)
    if served:
        at = datetime.now(UTC)
        turns = [{"tenant_id": tenant, "last_claimed_at": at, "taken_now": served[tenant]}
                 for tenant in sorted(served)]  # in order: no deadlock between claims  # fmt: skip
        await conn.execute(_turns_statement(conn), turns)
    return claimed


# Built once per dialect: a claim runs for every step a worker does not hand itself, and
# building these statements cost SQLAlchemy more than running them.
_CLAIMS: dict[str, Any] = {}
_TURNS: dict[str, Any] = {}


def _claim_statement(conn: AsyncConnection) -> Any:
    dialect = conn.dialect.name
    found = _CLAIMS.get(dialect)
    if found is None:
        if dialect == "postgresql":  # the database's clock (see the module doc)
            moment: Any = func.clock_timestamp()
            expiry: Any = moment + bindparam("lease", type_=Interval())
        else:
            moment = bindparam("now", type_=UTCDateTime())
            expiry = bindparam("expiry", type_=UTCDateTime())
        turns = (
            select(
                tasks.c.id, tasks.c.tenant_id, tasks.c.priority, tasks.c.available_at,
                func.row_number().over(
                    partition_by=tasks.c.tenant_id,
                    order_by=(tasks.c.priority.desc(), tasks.c.available_at),
                ).label("turn"),
            )
            .where(_claimable(moment))
            .subquery()
        )  # fmt: skip
        # The ranking is a level below the rows it picks: FOR UPDATE may not share a level
        # with a window function, and locking `tasks` here lets SKIP LOCKED pass over rows
        # another claimer holds and go on down the ranking.
        chosen = (
            select(tasks.c.id)
            .join(turns, turns.c.id == tasks.c.id)
            .outerjoin(tenant_turns, tenant_turns.c.tenant_id == turns.c.tenant_id)
            .order_by(
                # A tenant of weight w has w tasks in each round (TENANT_WEIGHTS), less those
                # it took in the round since its place in it last moved.
                (turns.c.turn - 1 + func.coalesce(tenant_turns.c.taken, 0))
                // func.coalesce(tenant_turns.c.weight, 1),
                tenant_turns.c.last_claimed_at.asc().nulls_first(),
                turns.c.priority.desc(),
                turns.c.available_at,
            )
            .limit(bindparam("limit", type_=Integer()))
        )
        if dialect == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True, of=tasks)
        found = _CLAIMS[dialect] = (
            update(tasks)
            .where(tasks.c.id.in_(chosen.scalar_subquery()))
            .values(lease_owner=bindparam("owner", type_=String()), lease_expires_at=expiry,
                    claims=tasks.c.claims + 1)
            .returning(*_TASK_COLUMNS)
        )  # fmt: skip
    return found


def _turns_statement(conn: AsyncConnection) -> Any:
    found = _TURNS.get(conn.dialect.name)
    if found is None:
        # A tenant's place in the round moves once it has taken its weight's worth of tasks.
        taken = tenant_turns.c.taken + bindparam("taken_now", type_=Integer())
        stmt = upsert(conn, tenant_turns).values(
            tenant_id=bindparam("tenant_id", type_=tenant_turns.c.tenant_id.type),
            last_claimed_at=bindparam("last_claimed_at", type_=UTCDateTime()),
            taken=0,
        )
        found = _TURNS[conn.dialect.name] = stmt.on_conflict_do_update(
            index_elements=[tenant_turns.c.tenant_id],
            set_={
                "last_claimed_at": case(
                    (taken >= tenant_turns.c.weight, stmt.excluded.last_claimed_at),
                    else_=tenant_turns.c.last_claimed_at,
                ),
                "taken": taken % tenant_turns.c.weight,
            },
        )
    return found


async def weigh_tenants(conn: AsyncConnection, weights: Mapping[str, int]) -> None:
    """Give each tenant named in `weights` its weight in the claims' rounds, and every other
    tenant 1 (TENANT_WEIGHTS). Names of no tenant are logged and passed over."""
    await conn.execute(update(tenant_turns).where(tenant_turns.c.weight != 1).values(weight=1))
    if not weights:
        return
    found = await conn.execute(
        select(tenants.c.id, tenants.c.name).where(tenants.c.name.in_(list(weights)))
    )
    known = {row.name: row.id for row in found}
    unknown = sorted(set(weights) - set(known))
    if unknown:
        logger.warning("TENANT_WEIGHTS names tenants that do not exist", tenants=unknown)
    if not known:
        return
    never = datetime(1970, 1, 1, tzinfo=UTC)  # a tenant not served yet goes first, as without a row
    stmt = upsert(conn, tenant_turns)
    await conn.execute(
        stmt.values([{"tenant_id": tenant_id, "last_claimed_at": never, "weight": weights[name]}
                     for name, tenant_id in known.items()])
        .on_conflict_do_update(index_elements=[tenant_turns.c.tenant_id],
                               set_={"weight": stmt.excluded.weight})
    )  # fmt: skip


async def renew(conn: AsyncConnection, task_id: uuid.UUID, owner: str, lease: timedelta) -> bool:
    """Extend a lease the caller still holds; False when it was lost (expired and taken)."""
    result = await conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
        .values(lease_expires_at=_expiry(conn, lease))
    )
    return result.rowcount == 1


async def finish(conn: AsyncConnection, task_id: uuid.UUID, owner: str) -> bool:
    """Remove a task the caller still holds; False (nothing removed) when its lease was lost."""
    result = await conn.execute(
        delete(tasks).where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
    )
    return result.rowcount == 1


async def release(conn: AsyncConnection, task_id: uuid.UUID, owner: str) -> None:
    """Give a task back unfinished (a worker shutting down): claimable again at once."""
    await conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
        # A hand-back is not a failed handling: it does not count toward MAX_CLAIMS.
        .values(lease_owner=None, lease_expires_at=None, claims=tasks.c.claims - 1)
    )
    await announce(conn, TASKS_READY, NOTIFY_CHANNEL)


async def put_back(conn: AsyncConnection, task_id: uuid.UUID, owner: str, due: datetime) -> bool:
    """Give a task back to be claimed again at `due` (a step that waits on); False when the
    caller no longer held it. Not a failed handling: it does not count toward MAX_CLAIMS."""
    result = await conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
        .values(
            lease_owner=None, lease_expires_at=None, available_at=due, claims=tasks.c.claims - 1
        )
    )
    return result.rowcount == 1


async def drop_waiting(conn: AsyncConnection, run_id: uuid.UUID) -> list[str]:
    """Delete a run's tasks no worker holds (a cancelled or failed run); returns their steps."""
    result = await conn.execute(
        delete(tasks)
        .where(tasks.c.run_id == run_id, tasks.c.lease_owner.is_(None))
        .returning(tasks.c.step_id)
    )
    return [row.step_id for row in result]


_HELD = select(tasks.c.step_id).where(
    tasks.c.run_id == bindparam("run_id", type_=tasks.c.run_id.type),
    tasks.c.lease_owner.is_not(None),
    tasks.c.step_id.not_in(RUN_LEVEL_TASKS),
)


async def leased_tasks(conn: AsyncConnection, run_id: uuid.UUID) -> frozenset[str]:
    """The steps (and run-level tasks: `:finish`, `:deadline`) of the run a worker holds."""
    found = await conn.execute(
        select(tasks.c.step_id).where(tasks.c.run_id == run_id, tasks.c.lease_owner.is_not(None))
    )
    return frozenset(row.step_id for row in found)


async def held_steps(conn: AsyncConnection, run_id: uuid.UUID) -> frozenset[str]:
    """The run's steps a worker holds: their task is leased (the worker records their outcome)."""
    return frozenset(row.step_id for row in await conn.execute(_HELD, {"run_id": run_id}))


async def next_available(conn: AsyncConnection) -> datetime | None:
    """When the earliest task not yet claimable becomes so (to sleep until then)."""
    found = await conn.execute(
        select(tasks.c.available_at)
        .where(tasks.c.lease_owner.is_(None))
        .order_by(tasks.c.available_at)
        .limit(1)
    )
    return found.scalar_one_or_none()


@dataclass(frozen=True)
class Depth:
    """The queue at one moment (run deadlines, which are timers and not work, left out)."""

    ready: int  # could be claimed now
    scheduled: int  # waiting for their time (retries with backoff)
    leased: int  # held by a worker
    oldest_ready_at: datetime | None


async def depth(conn: AsyncConnection) -> Depth:
    moment = now(conn)
    ready = _claimable(moment)
    leased = and_(tasks.c.lease_expires_at.is_not(None), tasks.c.lease_expires_at >= moment)
    row = (
        await conn.execute(
            select(
                func.count().filter(ready),
                func.count().filter(and_(tasks.c.available_at > moment, not_(leased))),
                func.count().filter(leased),
                func.min(tasks.c.available_at).filter(ready),
            ).where(tasks.c.step_id != DEADLINE)
        )
    ).one()
    return Depth(ready=row[0], scheduled=row[1], leased=row[2], oldest_ready_at=row[3])


def _expiry(conn: AsyncConnection, lease: timedelta) -> ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return now(conn) + lease
    return literal(datetime.now(UTC) + lease, UTCDateTime())
