"""`approval`: a step that waits, holding no worker, for a person to approve or reject.

    - id: approve
      uses: approval
      needs: [draft]
      with:
        proposal: "{{ steps.draft.output.text }}"  # any JSON: what is to be approved
        message: Send this reply to the customer?   # optional: shown to the approver
        timeout: 86400                               # optional, seconds from when it waits
        default: reject                              # with `timeout`: approve | reject
        on_reject: fail                              # or `continue`

The step waits until `POST /api/v1/workflows/{id}/approve` or `/reject` decides it (operator
and up), or its timeout passes (then `default` decides, `reject` when left out, by
`timeout`). Its output is the decision: `{"approved", "decision", "by", "comment", "data",
"decided_at"}`, where `data` is the proposal, or what the approver sent in its place. A
rejection fails the step with the class `approval_rejected` and the comment as the reason,
unless `on_reject: continue` (then it completes with `approved: false`).

Its row in `approvals` is written when the step begins waiting (once per attempt: a worker
that dies and tries again finds it, with its first `requested_at` and `expires_at`), and holds
the decision once made. A decision is taken only while the step waits, under the run's lock:
it writes the row, appends `ApprovalGranted` or `ApprovalRejected` (with the actor) to the
approval's aggregate, and makes the step's task due now, in one transaction. The step's check
holds its task's row before it reads the approval, and a decision wakes that row before it
writes the approval (both take the task's row first: they never deadlock), so a decision
committed during a check waits for it and then wakes the task the check put back, and one
committed before is seen by the check.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Integer, Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import announce
from workflow_engine.db.tables import approvals, step_runs, tasks, workflow_runs
from workflow_engine.db.upsert import upsert
from workflow_engine.engine import queue
from workflow_engine.engine.event_waits import MAX_TIMEOUT, timeout_seconds
from workflow_engine.engine.states import RUN_ACTIVE, StepStatus
from workflow_engine.events.append import append_events
from workflow_engine.events.store import NewEvent

APPROVAL = "approval"
AGGREGATE = "approvals"  # a server-owned aggregate type (events/system_types.py)
MAX_MESSAGE = 2000
MAX_COMMENT = 2000
APPROVED, REJECTED = "approved", "rejected"
TIMEOUT_ACTOR = "timeout"  # who decided, when no one did in time
_DEFAULTS = {"approve": APPROVED, "reject": REJECTED}
_ON_REJECT = ("fail", "continue")
_FIELDS = frozenset({"proposal", "message", "timeout", "default", "on_reject"})
# Approval ids: derived from the run, step and attempt (one request per attempt).
_APPROVALS = uuid.UUID("0b8f1c52-3e4a-4f7d-9a61-5c2d8e7b4a19")


class Event:
    """The approval aggregate's event types."""

    requested = "ApprovalRequested"
    granted = "ApprovalGranted"
    rejected = "ApprovalRejected"


ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "proposal": {"description": "What is to be approved (any JSON): the step's output "
                                    "`data`, unless the approver sends an edited one."},
        "message": {"type": "string", "maxLength": MAX_MESSAGE,
                    "description": "What the approver is shown."},
        "timeout": {"type": "number", "exclusiveMinimum": 0,
                    "maximum": MAX_TIMEOUT.total_seconds(),
                    "description": "Seconds to wait for a decision, from when the step waits."},
        "default": {"enum": list(_DEFAULTS), "default": "reject",
                    "description": "The decision when the timeout passes (needs `timeout`)."},
        "on_reject": {"enum": list(_ON_REJECT), "default": "fail",
                      "description": "`fail` the step (class `approval_rejected`), or "
                                     "`continue` with `approved: false`."},
    },
    "additionalProperties": False,
}  # fmt: skip
DESCRIPTION = (
    "Waits durably, holding no worker, until a person approves or rejects its proposal "
    "(POST /api/v1/workflows/{id}/approve or /reject) or its timeout passes; its output is "
    "the decision, with the proposal or the approver's edit of it as `data`."
)


class ApprovalArgumentError(ValueError):
    """The step's arguments do not describe an approval it can ask for."""


@dataclass(frozen=True)
class ApprovalRequest:
    proposal: Any
    message: str | None
    timeout: float | None
    default: str  # the decision when the timeout passes: APPROVED or REJECTED
    on_reject: str  # "fail" or "continue"

    def expires(self, started: datetime) -> datetime | None:
        return None if self.timeout is None else started + timedelta(seconds=self.timeout)


def argument_problems(arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with an `approval`'s `with`, as far as it can be told before a run
    (values that are expressions are checked when the step runs)."""
    unknown = sorted(set(arguments) - _FIELDS)
    if unknown:
        return [f"{APPROVAL} does not take {', '.join(map(repr, unknown))}"]
    problems = []
    settled = {name: value for name, value in arguments.items() if not _expression(value)}
    for name, check in (
        ("message", _message),
        ("timeout", partial(timeout_seconds, error=ApprovalArgumentError)),
        ("default", _default),
        ("on_reject", _on_reject),
    ):
        if name in settled:
            try:
                check(settled[name])
            except ApprovalArgumentError as exc:
                problems.append(str(exc))
    if "default" in arguments and "timeout" not in arguments:
        problems.append("`default` is the decision when `timeout` passes: give `timeout` too")
    return problems


def parse(arguments: Mapping[str, Any]) -> ApprovalRequest:
    """The request a step's evaluated arguments describe."""
    problems = argument_problems(arguments)
    if problems:
        raise ApprovalArgumentError("; ".join(problems))
    return ApprovalRequest(
        proposal=arguments.get("proposal"),
        message=_message(arguments.get("message")),
        timeout=timeout_seconds(arguments.get("timeout"), ApprovalArgumentError),
        default=_default(arguments.get("default", "reject")),
        on_reject=_on_reject(arguments.get("on_reject", "fail")),
    )


def _expression(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _message(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_MESSAGE:
        raise ApprovalArgumentError(
            f"`message` must be text of at most {MAX_MESSAGE} characters: {value!r:.60}"
        )
    return value


def _default(value: Any) -> str:
    if value not in _DEFAULTS:
        raise ApprovalArgumentError(f"`default` must be `approve` or `reject`: {value!r:.60}")
    return _DEFAULTS[value]


def _on_reject(value: Any) -> str:
    if value not in _ON_REJECT:
        raise ApprovalArgumentError(f"`on_reject` must be `fail` or `continue`: {value!r:.60}")
    return str(value)


def approval_id(task: queue.Task) -> uuid.UUID:
    """The approval an attempt of an `approval` step asks for."""
    return uuid.uuid5(_APPROVALS, f"{task.run_id}:{task.step_id}:{task.attempt}")


@dataclass(frozen=True)
class Decision:
    """A decided approval, as the step's output (or failure) tells it."""

    decision: str
    by: str
    decided_at: datetime
    comment: str | None
    data: Any
    on_reject: str
    timeout: float | None = None  # the step's, in seconds

    @property
    def approved(self) -> bool:
        return self.decision == APPROVED

    def output(self) -> dict[str, Any]:
        return {"approved": self.approved, "decision": self.decision, "by": self.by,
                "comment": self.comment, "data": self.data,
                "decided_at": self.decided_at.isoformat()}  # fmt: skip

    def reason(self) -> str:
        """Why a rejection fails the step: the approver's comment, else who rejected."""
        if self.comment:
            return self.comment
        if self.by == TIMEOUT_ACTOR:
            return f"timed out: no decision within {self.timeout or 0:g} s"
        return f"rejected by {self.by}"


# --- the table: asking, and the step's check ------------------------------------------------


async def request(
    conn: AsyncConnection,
    task: queue.Task,
    workflow_name: str,
    asked: ApprovalRequest,
    now: datetime,
    actor: str,
) -> datetime | None:
    """Record the attempt's approval request, unless an earlier try of it did (then that one
    stands, its times included); returns when it expires."""
    row_id = approval_id(task)
    expires_at = asked.expires(now)
    inserted = await conn.execute(
        upsert(conn, approvals)
        .values(
            id=row_id, tenant_id=task.tenant_id, run_id=task.run_id, step_id=task.step_id,
            attempt=task.attempt, workflow_name=workflow_name, proposal=asked.proposal,
            message=asked.message, on_timeout=asked.default if asked.timeout else None,
            on_reject=asked.on_reject, requested_at=now, expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=[approvals.c.id])
    )  # fmt: skip
    if inserted.rowcount == 1:
        data = {"workflow_id": str(task.run_id), "step": task.step_id, "attempt": task.attempt,
                "workflow_name": workflow_name, "message": asked.message,
                "expires_at": None if expires_at is None else expires_at.isoformat()}  # fmt: skip
        await _append(conn, task.tenant_id, row_id, Event.requested, data, actor)
        return expires_at
    return (await conn.execute(_EXPIRES, {"id": row_id})).scalar_one()  # type: ignore[no-any-return]


async def check(conn: AsyncConnection, task: queue.Task, actor: str) -> Decision | None:
    """For a waiting approval step whose task the caller holds: its decision, made by the
    timeout now if it passed (by the queue's clock) undecided; else None, and the task is put
    back, due at the timeout (or never)."""
    # Lock the approval's row first, as a decision does: a decision made during the check
    # waits for it and then wakes the task it put back; one made before it is seen here.
    row = (await conn.execute(_ROW_LOCKED, {"id": approval_id(task)})).first()
    if row is None:  # cannot be: the row comes before the wait; fail the step rather than hang
        raise LookupError(f"no approval was requested for {task.step_id} attempt {task.attempt}")
    held = await conn.execute(_HOLD, {"task_id": task.id, "owner": task.lease_owner})
    if held.rowcount != 1:
        return None  # the lease was lost: whoever holds the task now checks
    if row.decision is not None:
        return _decided(row)
    moment = (await conn.execute(select(queue.now(conn)))).scalar_one()
    if row.expires_at is None or moment < row.expires_at:
        await queue.put_back(conn, task.id, task.lease_owner or "", row.expires_at or queue.NEVER)
        return None
    timed_out = await _decide(conn, row, row.on_timeout, TIMEOUT_ACTOR, None, row.proposal, moment)
    if timed_out is None:  # cannot be: decisions wait for the approval row this holds
        row = (await conn.execute(_ROW, {"id": approval_id(task)})).one()
        return _decided(row)
    event = Event.granted if timed_out.approved else Event.rejected
    await _append(conn, task.tenant_id, row.id, event, _told(row, timed_out), actor)
    return timed_out


def _decided(row: Row[Any]) -> Decision:
    return Decision(row.decision, row.decided_by, row.decided_at, row.comment, row.data,
                    row.on_reject, _timeout_of(row))  # fmt: skip


def _timeout_of(row: Row[Any]) -> float | None:
    return None if row.expires_at is None else (row.expires_at - row.requested_at).total_seconds()


async def _decide(
    conn: AsyncConnection,
    row: Row[Any],
    decision: str,
    by: str,
    comment: str | None,
    data: Any,
    moment: datetime,
) -> Decision | None:
    """Write the decision on an undecided row; None when another decision got there first."""
    values = {"decision": decision, "decided_by": by, "decided_at": moment, "comment": comment,
              "data": data}  # fmt: skip
    written = await conn.execute(
        update(approvals)
        .where(approvals.c.id == row.id, approvals.c.decision.is_(None))
        .values(**values)
    )
    if written.rowcount != 1:
        return None
    return Decision(decision, by, moment, comment, data, row.on_reject, _timeout_of(row))


def _told(row: Row[Any], decided: Decision) -> dict[str, Any]:
    """What a decision event says."""
    told = {"workflow_id": str(row.run_id), "step": row.step_id, "attempt": row.attempt,
            "decision": decided.decision, "by": decided.by, "comment": decided.comment,
            "edited": decided.data != row.proposal}  # fmt: skip
    if told["edited"]:
        told["data"] = decided.data
    return told


async def _append(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    row_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    actor: str,
    correlation_id: str | None = None,
    source: str = "worker",
) -> None:
    metadata = {"actor": actor, "correlation_id": correlation_id, "source": source}
    await append_events(
        conn, tenant_id=tenant_id, aggregate_type=AGGREGATE, aggregate_id=str(row_id),
        new_events=[NewEvent(event_type, data, metadata)], expected_version=None,
    )  # fmt: skip


# --- deciding, for the API -----------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    """A decision the API made: the approval's id and what the step will be told."""

    approval_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int
    decision: Decision


class NotWaiting(Exception):
    """The step is not waiting for a decision: why, for the 409."""


async def decide(
    conn: AsyncConnection,
    run_id: uuid.UUID,
    step_id: str,
    *,
    approve: bool,
    by: str,
    comment: str | None,
    data: Any,
    edited: bool,
    correlation_id: str | None,
) -> Decided:
    """Decide the approval `step_id` of `run_id` waits for, in the caller's transaction (which
    holds the run's lock and saw it active): write the decision, append its event with the
    actor, and make the step's task due now. `NotWaiting` when the step waits for none."""
    # The approval's row locked first, as the step's check takes it (no deadlock): a check
    # in progress finishes first, and the task it put back is then woken below.
    row = (await conn.execute(_PENDING, {"run_id": run_id, "step_id": step_id})).first()
    if row is None:
        raise NotWaiting(f"step {step_id!r} is not waiting for approval")
    if row.decision is not None:
        raise NotWaiting(
            f"step {step_id!r} was {row.decision} by {row.decided_by} at "
            f"{row.decided_at.isoformat()}"
        )
    if row.step_status != StepStatus.waiting or row.step_attempts != row.attempt:
        raise NotWaiting(f"step {step_id!r} is not waiting for approval: it is {row.step_status}")
    moment = (await conn.execute(select(queue.now(conn)))).scalar_one()
    await conn.execute(_WAKE, {"r": run_id, "s": step_id, "a": row.attempt, "now": moment})
    decision = APPROVED if approve else REJECTED
    decided = await _decide(conn, row, decision, by, comment,
                            data if edited else row.proposal, moment)  # fmt: skip
    if decided is None:  # the timeout decided it meanwhile
        raise NotWaiting(f"step {step_id!r} is no longer waiting for approval: it timed out")
    event = Event.granted if approve else Event.rejected
    await _append(conn, row.tenant_id, row.id, event, _told(row, decided), by, correlation_id,
                  "api")  # fmt: skip
    await announce(conn, queue.TASKS_READY, queue.NOTIFY_CHANNEL)
    return Decided(row.id, run_id, step_id, row.attempt, decided)


# --- what waits, for the API ---------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    id: uuid.UUID
    run_id: uuid.UUID
    workflow_name: str
    step_id: str
    attempt: int
    proposal: Any
    message: str | None
    requested_at: datetime
    expires_at: datetime | None


async def waiting(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    workflow_name: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Waiting]:
    """The tenant's approvals a decision may still be made for (the step waits for it),
    oldest request first, after the (requested_at, id) key `after`."""
    stmt = _WAITING.where(approvals.c.tenant_id == tenant_id)
    if workflow_name is not None:
        stmt = stmt.where(approvals.c.workflow_name == workflow_name)
    if after is not None:
        at, last = after
        stmt = stmt.where(
            (approvals.c.requested_at > at)
            | ((approvals.c.requested_at == at) & (approvals.c.id > last))
        )
    stmt = stmt.order_by(approvals.c.requested_at, approvals.c.id).limit(limit)
    return [Waiting(**row._mapping) for row in await conn.execute(stmt)]


# Statements built once (building one costs more than its round trip).
_ID = bindparam("id", type_=approvals.c.id.type)
_EXPIRES = select(approvals.c.expires_at).where(approvals.c.id == _ID)
_ROW = select(approvals).where(approvals.c.id == _ID)
_ROW_LOCKED = _ROW.with_for_update()
_HOLD = (
    update(tasks)
    .where(
        tasks.c.id == bindparam("task_id", type_=tasks.c.id.type),
        tasks.c.lease_owner == bindparam("owner"),
    )
    .values(claims=tasks.c.claims)
)
_STEP = (step_runs.c.run_id == approvals.c.run_id) & (step_runs.c.step_id == approvals.c.step_id)
# The step's latest approval, with the step's state.
_PENDING = (
    select(approvals, step_runs.c.status.label("step_status"),
           step_runs.c.attempts.label("step_attempts"))
    .join(step_runs, _STEP)
    .where(
        approvals.c.run_id == bindparam("run_id", type_=approvals.c.run_id.type),
        approvals.c.step_id == bindparam("step_id"),
    )
    .order_by(approvals.c.attempt.desc())
    .limit(1)
    .with_for_update(of=approvals)
)  # fmt: skip
_WAITING = (
    select(approvals.c.id, approvals.c.run_id, approvals.c.workflow_name, approvals.c.step_id,
           approvals.c.attempt, approvals.c.proposal, approvals.c.message,
           approvals.c.requested_at, approvals.c.expires_at)
    .join(step_runs, _STEP)
    .join(workflow_runs, workflow_runs.c.id == approvals.c.run_id)
    .where(
        approvals.c.decision.is_(None),
        step_runs.c.status == StepStatus.waiting,
        step_runs.c.attempts == approvals.c.attempt,
        workflow_runs.c.status.in_(sorted(RUN_ACTIVE)),
    )
)  # fmt: skip
_WAKE = (
    update(tasks)
    .where(
        tasks.c.run_id == bindparam("r", type_=tasks.c.run_id.type),
        tasks.c.step_id == bindparam("s"),
        tasks.c.attempt == bindparam("a", type_=Integer()),
        tasks.c.lease_owner.is_(None),
    )
    .values(available_at=bindparam("now", type_=tasks.c.available_at.type))
)
