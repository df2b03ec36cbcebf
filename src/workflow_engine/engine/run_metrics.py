"""Counting runs and steps for `/metrics`, once their events have committed.

Events appended through `append_run_events` (a cancel) are counted after their transaction
commits (never for one that rolls back): runs finished, with how long they took, read from
the read model the same append has just updated. The engine's own transitions and triggers
count what they did with the functions below once they have committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import after_commit
from workflow_engine.db.tables import workflow_runs
from workflow_engine.engine.run_events import FINAL_STATUS, RunEvent
from workflow_engine.events.store import RecordedEvent
from workflow_engine.observability import metrics


async def count_run_events(conn: AsyncConnection, recorded: list[RecordedEvent]) -> None:
    for event in recorded:
        if event.event_type == RunEvent.triggered:
            name = str(event.data["definition"]["name"])
            after_commit(conn, metrics.runs_started.labels(name).inc)
        elif (status := FINAL_STATUS.get(event.event_type)) is not None:  # type: ignore[call-overload]
            row = (
                await conn.execute(
                    select(workflow_runs.c.workflow_name, workflow_runs.c.created_at).where(
                        workflow_runs.c.id == uuid.UUID(event.aggregate_id)
                    )
                )
            ).first()
            if row is not None:
                _finished(conn, row.workflow_name, status, row.created_at, event.recorded_at)


def _finished(
    conn: AsyncConnection, workflow: str, status: str, created: datetime, ended: datetime
) -> None:
    after_commit(conn, lambda: count_run_finished(workflow, status, created, ended))


def count_run_finished(workflow: str, status: str, created: datetime, ended: datetime) -> None:
    """A run ended (its transaction has committed): counted, and how long it took observed."""
    metrics.runs_finished.labels(workflow, status).inc()
    metrics.run_duration.labels(workflow, status).observe(
        max((ended - created).total_seconds(), 0.0)
    )


def count_step(node: str, outcome: str, duration_ms: float | None) -> None:
    """A step attempt ended with `outcome` (completed, failed, retried, skipped, cancelled)
    (its transaction has committed)."""
    metrics.steps.labels(node, outcome).inc()
    if duration_ms is not None:
        metrics.step_duration.labels(node, outcome).observe(duration_ms / 1000)
