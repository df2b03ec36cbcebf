"""Approval steps over HTTP: approve or reject what a run's `approval` step waits for, and
list what waits in the tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api.context import ApprovalsDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.api.validation import StorableText, utc_moment
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.engine import approvals, runs
from workflow_engine.engine.approvals import Decided, Waiting
from workflow_engine.engine.definitions import NAME_PATTERN, STEP_ID_PATTERN
from workflow_engine.errors import InvalidInput
from workflow_engine.schemas.approvals import ApprovalView, DecisionView

router = resource_router(tags=["approvals"])
Approver = Annotated[Principal, require(Permission.workflows_approve)]
Reader = Annotated[Principal, require(Permission.workflows_read)]

StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN, description="The `approval` step.")]
Comment = Annotated[
    StorableText | None,
    Field(max_length=approvals.MAX_COMMENT, description="Why; a rejection's reason."),
]


class ApproveRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"step": "approve", "comment": "Friendlier wording",
             "data": "Hi Ada, your order left our warehouse today."},
        ]},
    )  # fmt: skip

    step: StepId
    comment: Comment = None
    data: Any = Field(None, description="Replaces the proposal as the step's output `data`.")


class RejectRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"step": "approve", "comment": "Promises a refund"}]},
    )

    step: StepId
    comment: Comment = None


def decision_view(decided: Decided) -> DecisionView:
    made = decided.decision
    return DecisionView(
        approval_id=decided.approval_id, workflow_id=decided.run_id, step=decided.step_id,
        attempt=decided.attempt, decision=made.decision, by=made.by, comment=made.comment,
        data=made.data, decided_at=made.decided_at,
    )  # fmt: skip


def approval_view(waiting: Waiting) -> ApprovalView:
    return ApprovalView(
        approval_id=waiting.id, workflow_id=waiting.run_id, workflow_name=waiting.workflow_name,
        step=waiting.step_id, attempt=waiting.attempt, proposal=waiting.proposal,
        message=waiting.message, requested_at=waiting.requested_at,
        expires_at=waiting.expires_at,
    )  # fmt: skip


_DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such run in the tenant"},
    409: {"description": "The run has ended, or the step waits for no decision"},
}


@router.post(
    "/api/v1/workflows/{workflow_id}/approve",
    summary="Approve what a run's approval step waits for",
    responses=_DECISION_RESPONSES,
)
async def approve_step(
    workflow_id: uuid.UUID,
    body: ApproveRequest,
    principal: Approver,
    service: ApprovalsDep,
    origin: Origin,
) -> DecisionView:
    """The step completes with the decision as its output; `data`, when given, replaces the
    proposal as the output's `data` (an edited reply). `ApprovalGranted` on the approval's
    aggregate records who approved."""
    decided = await service.decide(
        principal.tenant_id, workflow_id, body.step, approve=True,
        origin=runs.Origin(principal.actor, origin.correlation_id), comment=body.comment,
        data=body.data, edited="data" in body.model_fields_set,
    )  # fmt: skip
    return decision_view(decided)


@router.post(
    "/api/v1/workflows/{workflow_id}/reject",
    summary="Reject what a run's approval step waits for",
    responses=_DECISION_RESPONSES,
)
async def reject_step(
    workflow_id: uuid.UUID,
    body: RejectRequest,
    principal: Approver,
    service: ApprovalsDep,
    origin: Origin,
) -> DecisionView:
    """The step fails with the class `approval_rejected` and the comment as its reason (the
    run fails with it), unless it says `on_reject: continue`. `ApprovalRejected` on the
    approval's aggregate records who rejected."""
    decided = await service.decide(
        principal.tenant_id, workflow_id, body.step, approve=False,
        origin=runs.Origin(principal.actor, origin.correlation_id), comment=body.comment,
    )  # fmt: skip
    return decision_view(decided)


@router.get("/api/v1/approvals", summary="What waits for approval in the tenant, oldest first")
async def list_approvals(
    reader: Reader,
    service: ApprovalsDep,
    workflow_name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ApprovalView]:
    """Approval steps waiting for a decision now: those of runs that ended (cancelled,
    failed) or were decided are not listed."""
    after = _after(cursor)
    found = await service.waiting(
        reader.tenant_id, workflow_name=workflow_name, after=after, limit=limit + 1
    )
    return page_of(found, limit, approval_view, _cursor_key)


def _cursor_key(waiting: Waiting) -> dict[str, Any]:
    return {"requested_at": waiting.requested_at.isoformat(), "id": str(waiting.id)}


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    key = decode_cursor(cursor, requested_at=str, id=str)
    if key is None:
        return None
    try:
        at = datetime.fromisoformat(key["requested_at"])
        if at.tzinfo is None:
            raise ValueError("naive")
        return utc_moment(at), uuid.UUID(key["id"])
    except ValueError:
        raise InvalidInput("the cursor is not one this server issued") from None
