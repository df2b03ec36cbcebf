"""Firing schedules: every server process looks for due ticks and starts their runs.

Each schedule with a tick due is fired in a transaction of its own that locks its row (on
PostgreSQL `FOR UPDATE SKIP LOCKED`: processes pass over each other's; SQLite runs one writer
at a time), starts one run per tick to fire (`timing.due`) and moves `next_fire_at` on before
it commits. A process that finds the row moved on, or locked, fires nothing: each tick starts
exactly one run however many processes look, and a crash mid-fire rolls back both.

The runs are started as by the API, with the schedule as their actor (`schedule:<id>`) and
source `schedule`, and `schedule_id` and `scheduled_for` (the tick) in their
`WorkflowTriggered` metadata. A template that no longer exists, or input it no longer accepts,
fails the tick: a `ScheduleTickFailed` event says why and the schedule moves on. Skipped
missed ticks are recorded as `ScheduleTicksMissed`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth.audit import RequestOrigin, record
from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.bootstrap.engine_services import WorkflowCatalogService
from workflow_engine.bootstrap.periodic import PeriodicService
from workflow_engine.engine import admission
from workflow_engine.engine.runs import Origin, check_input, starting_run
from workflow_engine.engine.store import RunStore
from workflow_engine.errors import InvalidInput, NotFound
from workflow_engine.schedules import store
from workflow_engine.schedules.service import AGGREGATE
from workflow_engine.schedules.store import Schedule
from workflow_engine.schedules.timing import CatchUp, due

POLL = 1.0  # seconds between looks when no tick is known to come sooner
# Schedules fired in one look; the rest wait for the next (a second later at most).
PER_LOOK = 200
_NO_REQUEST = RequestOrigin(client_address=None, correlation_id=None)


class ScheduleTicker(PeriodicService):
    """A lifecycle service: the look-fire-sleep loop of this process."""

    def __init__(
        self, database: DatabaseService, workflows: WorkflowCatalogService, *, capped: bool = False
    ) -> None:
        """`capped`: `MAX_RUNNING_PER_TENANT` is set (runs start through admission)."""
        super().__init__("schedules", "firing schedules", retry_after=POLL)
        self._database = database
        self._workflows = workflows
        self._capped = capped

    async def run_pass(self) -> float:
        return await self.look()

    async def look(self) -> float:
        """Fire what is due now; returns how long to sleep before looking again."""
        db = self._database.database
        runs = RunStore(db)
        for _ in range(PER_LOOK):
            async with db.transaction() as conn:
                found = await store.due(conn, datetime.now(UTC), limit=1)
                if not found:
                    break
                await self._fire(conn, runs, found[0])
        async with db.read() as conn:
            upcoming = await store.next_due(conn)
        if upcoming is None:
            return POLL
        return max(0.0, min(POLL, (upcoming - datetime.now(UTC)).total_seconds()))

    async def _fire(self, conn: AsyncConnection, runs: RunStore, schedule: Schedule) -> None:
        assert schedule.next_fire_at is not None
        now = datetime.now(UTC)
        ticks = due(schedule.timing, schedule.next_fire_at, now, schedule.catch_up)
        moved: dict[str, object] = {"next_fire_at": ticks.next_fire_at}
        if ticks.missed and schedule.catch_up is CatchUp.skip:
            missed = {"missed": ticks.missed, "catch_up": schedule.catch_up.value}
            await _record(conn, schedule, "ScheduleTicksMissed", missed)
        if ticks.fire:
            try:
                definition = self._workflows.catalog.get(
                    schedule.workflow_name, schedule.workflow_version
                )
                check_input(definition, schedule.data)
            except (NotFound, InvalidInput) as exc:
                failed = {"scheduled_for": ticks.fire[-1].isoformat(), "reason": str(exc)}
                await _record(conn, schedule, "ScheduleTickFailed", failed)
            else:
                gated = admission.gated(definition, capped=self._capped, child=False)
                for tick in ticks.fire:
                    origin = Origin(f"schedule:{schedule.id}", str(uuid.uuid4()), "schedule")
                    new = starting_run(schedule.tenant_id, definition, schedule.data, origin,
                                       schedule.priority, gated=gated)  # fmt: skip
                    new.metadata.update(schedule_id=str(schedule.id),
                                        scheduled_for=tick.isoformat())  # fmt: skip
                    await runs.start(conn, new)
                    moved["last_run_id"] = new.run.id
            moved["last_fired_at"] = ticks.fire[-1]
        await store.change(conn, schedule.id, moved)


async def _record(
    conn: AsyncConnection, schedule: Schedule, event_type: str, data: Mapping[str, object]
) -> None:
    await record(
        conn, tenant_id=schedule.tenant_id, aggregate_type=AGGREGATE,
        aggregate_id=str(schedule.id), event_type=event_type,
        actor=f"schedule:{schedule.id}", origin=_NO_REQUEST, data={"name": schedule.name, **data},
    )  # fmt: skip
