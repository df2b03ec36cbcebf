"""The states a run and a step can be in, and the ways a step attempt can end.

Stored as text (no database ENUM, so adding a state needs no type migration); a `StrEnum`
compares equal to the text it is stored as, so rows read back compare with these directly.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    queued = "queued"  # triggered; no step has started yet
    running = "running"
    waiting = "waiting"  # every unfinished step waits on a durable timer, an event or a child run
    completed = "completed"
    failed = "failed"
    cancelling = "cancelling"  # a cancel was asked for; steps a worker holds are being stopped
    cancelled = "cancelled"


class StepStatus(StrEnum):
    pending = "pending"  # its needs have not finished, or it waits in the queue
    scheduled = "scheduled"  # failed; the next attempt waits for its retry time
    running = "running"
    waiting = "waiting"
    completed = "completed"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


class Outcome(StrEnum):
    """How one attempt of a step ended, as the worker saw it."""

    completed = "completed"
    failed = "failed"
    skipped = "skipped"  # its `if` was false, or a step it needs was skipped
    cancelled = "cancelled"  # the run stopped before or while it ran
    lost = "lost"  # another worker took the task over: this one records nothing


RUN_ACTIVE = frozenset({RunStatus.queued, RunStatus.running, RunStatus.waiting})
RUN_FINISHED = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled})
# Runs a worker or a cancel may still move: active, or stopping.
RUN_UNFINISHED = RUN_ACTIVE | {RunStatus.cancelling}
STEP_FINISHED = frozenset(
    {StepStatus.completed, StepStatus.failed, StepStatus.skipped, StepStatus.cancelled}
)
