"""A run as the API shows it: what a trigger, a status, a results or a log read answer.

Pydantic only, so that the client (`workflow_engine.client`) parses the server's answers with
the very models the server renders them with, without importing the server.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RunLinks(BaseModel):
    status: str
    results: str
    logs: str
    cancel: str
    retry: str
    events: str


class TriggeredRun(BaseModel):
    workflow_id: uuid.UUID
    workflow_name: str
    version: int
    status: str
    created_at: datetime
    links: RunLinks


class FinishedRun(TriggeredRun):
    """The trigger's answer when `wait` saw the run end: the 202 body plus the outcome, as
    `links.results` gives it."""

    finished_at: datetime | None
    output: Any = Field(description="The workflow's `output`, when completed.")
    error: Any = Field(None, description="Why it failed or was cancelled, with the step.")


class StepStatus(BaseModel):
    id: str
    uses: str
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    next_attempt_at: datetime | None = Field(
        description="When a failed step's next attempt runs, or when a waiting `sleep` wakes."
    )
    error: Any


class Progress(BaseModel):
    completed: int
    total: int


class ModelUsage(BaseModel):
    provider: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float


class LLMUsage(BaseModel):
    """The run's completed LLM steps, as their providers counted them."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    by_model: list[ModelUsage]


class ParentRun(BaseModel):
    workflow_id: uuid.UUID
    step: str = Field(description="The parent's `workflow` step that started this run.")


class ChildRun(BaseModel):
    workflow_id: uuid.UUID
    workflow_name: str
    step: str = Field(description="This run's `workflow` step that started the child.")
    status: str


class ReplayOf(BaseModel):
    workflow_id: uuid.UUID = Field(description="The run this one replays.")
    from_step: str = Field(description="The step it executed again from.")


class Replayed(BaseModel):
    workflow_id: uuid.UUID
    from_step: str
    status: str
    created_at: datetime


class RunStatus(BaseModel):
    workflow_id: uuid.UUID
    workflow_name: str
    version: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    steps: list[StepStatus]
    error: Any
    parent: ParentRun | None = Field(description="The run that started this one, if any.")
    children: list[ChildRun] = Field(description="The runs this one's steps started.")
    replay_of: ReplayOf | None = Field(description="The run this one replays, if any.")
    replays: list[Replayed] = Field(description="The replays of this run, oldest first.")
    llm_usage: LLMUsage = Field(
        description="What the run's completed LLM steps report, summed (not outputs a replay "
        "reused). Every call, failed attempts' included, is at `GET .../usage`."
    )
    links: RunLinks


class RunResults(BaseModel):
    workflow_id: uuid.UUID
    status: str
    output: Any = Field(description="The workflow's `output`, when completed.")
    error: Any = Field(None, description="Why it failed or was cancelled, with the step.")


class RunSummary(BaseModel):
    workflow_id: uuid.UUID
    workflow_name: str
    version: int
    status: str
    created_at: datetime
    finished_at: datetime | None
    progress: Progress


class ReplayedRun(TriggeredRun):
    replay_of: ReplayOf
    reused: list[str] = Field(description="The steps completed with the original's outputs.")


class LogEntryView(BaseModel):
    id: str = Field(description="Stable: `<event position>.<index>`; resume after it.")
    time: datetime
    level: str
    step: str | None
    attempt: int | None
    message: str
    fields: dict[str, Any]
