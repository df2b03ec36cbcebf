"""Approvals as the API sees them: decide a run's approval step, list what waits.

A decision is one tenant transaction holding the run's lock (as a cancel does, so a run
cancelled meanwhile cannot be decided, and two decisions take turns): the run must be going
and the step an `approval` step waiting for its decision; `approvals.decide` writes it,
appends its event and wakes the step.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from workflow_engine.db import Database
from workflow_engine.engine import approvals
from workflow_engine.engine.approvals import Decided, NotWaiting, Waiting
from workflow_engine.engine.runs import Origin, lock_run
from workflow_engine.engine.states import RUN_ACTIVE
from workflow_engine.errors import Conflict
from workflow_engine.events.storable import check_document


class ApprovalService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def decide(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        step_id: str,
        *,
        approve: bool,
        origin: Origin,
        comment: str | None = None,
        data: Any = None,
        edited: bool = False,
    ) -> Decided:
        """Approve (with `data` in place of the proposal when `edited`) or reject the approval
        `step_id` waits for. 404 for a run not in the tenant; 409 when the run has ended or
        the step waits for no decision (not an approval step, not there yet, decided)."""
        if edited:
            check_document("data", {"data": data})
        async with self.db.tenant_transaction(tenant_id) as conn:
            run = await lock_run(conn, tenant_id, run_id)
            if run.status not in RUN_ACTIVE:
                raise Conflict(f"run {run_id} is {run.status}: its approvals can no longer "
                               "be decided")  # fmt: skip
            uses = {step["id"]: step.get("uses") for step in run.definition["steps"]}
            if step_id not in uses:
                raise Conflict(f"run {run_id} has no step {step_id!r}")
            if uses[step_id] != approvals.APPROVAL:
                raise Conflict(f"step {step_id!r} is not an approval step: it uses "
                               f"{uses[step_id]}")  # fmt: skip
            try:
                return await approvals.decide(
                    conn, run_id, step_id, approve=approve, by=origin.actor, comment=comment,
                    data=data, edited=edited, correlation_id=origin.correlation_id,
                )  # fmt: skip
            except NotWaiting as exc:
                raise Conflict(f"run {run_id}: {exc}") from None

    async def waiting(
        self,
        tenant_id: uuid.UUID,
        *,
        workflow_name: str | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[Waiting]:
        async with self.db.tenant_read(tenant_id) as conn:
            return await approvals.waiting(
                conn, tenant_id, workflow_name=workflow_name, after=after, limit=limit
            )
