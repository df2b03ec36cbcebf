"""Approvals as the API shows them: what waits for a decision, and a decision."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class DecisionView(BaseModel):
    approval_id: uuid.UUID = Field(description="Its events are on this aggregate.")
    workflow_id: uuid.UUID
    step: str
    attempt: int
    decision: str = Field(description="`approved` or `rejected`.")
    by: str = Field(description="Who decided: `user:<id>` or `api_key:<id>`.")
    comment: str | None
    data: Any = Field(description="What the step goes on with: the proposal, or its edit.")
    decided_at: datetime


class ApprovalView(BaseModel):
    approval_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_name: str
    step: str
    attempt: int
    proposal: Any
    message: str | None
    requested_at: datetime
    expires_at: datetime | None = Field(description="When the timeout decides; null: never.")
