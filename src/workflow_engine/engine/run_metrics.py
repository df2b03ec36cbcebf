"""Counting runs and steps for `/metrics`, once their events have committed.

Every run event passes through `append_run_events`; this looks at what it appended and,
after the transaction commits (never for one that rolls back), counts runs started and
finished and observes how long they took. A finished run's name and start time are read
from its read model, which the same append has just updated.
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
    seconds = max((ended - created).total_seconds(), 0.0)

    def count() -> None:
        metrics.runs_finished.labels(workflow, status).inc()
        metrics.run_duration.labels(workflow, status).observe(seconds)

    after_commit(conn, count)


def count_step(conn: AsyncConnection, node: str, outcome: str, duration_ms: float | None) -> None:
    """A step attempt ended with `outcome` (completed, failed, retried, skipped, cancelled)."""

    def count() -> None:
        metrics.steps.labels(node, outcome).inc()
        if duration_ms is not None:
            metrics.step_duration.labels(node, outcome).observe(duration_ms / 1000)

    after_commit(conn, count)
