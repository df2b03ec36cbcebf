"""A run and its steps as the read model holds them (`workflow_runs`, `step_runs`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StepRecord:
    step_id: str
    uses: str
    status: str
    attempts: int
    output: Any
    error: Any
    next_attempt_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RunRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_name: str
    workflow_version: int
    status: str
    input: Any
    output: Any
    error: Any
    definition: dict[str, Any]
    steps_total: int
    steps_done: int
    correlation_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int = 0  # of the run's aggregate: the number of events it has
    steps: tuple[StepRecord, ...] = ()
    parent_run_id: uuid.UUID | None = None  # a child run's parent run and step
    parent_step_id: str | None = None
    gated: bool = False  # started through admission (a limit applies to it)
    replay_of_run_id: uuid.UUID | None = None  # a replay's original run, and the step it
    replay_from_step: str | None = None  # executes again from (engine/replays.py)

    def step(self, step_id: str) -> StepRecord:
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)
