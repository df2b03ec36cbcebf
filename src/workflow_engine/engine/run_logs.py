"""Run logs: what a run's nodes logged, and its lifecycle, as ordered entries with stable ids.

Nodes log through `ctx.log` (a `RunLogBuffer`); the worker appends what they logged as
`StepLogged` events on the run's aggregate — every half second while the step runs, and the
rest with its outcome — so the entries are as durable as the run's history. `entries_of`
turns any run event into log entries (a started, failed or finished step says so too); the
`run_logs` read model and the live `?follow=true` stream both use it, so they agree. An
entry's id is `<event position>.<index in the event>`: the same after any rebuild.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import run_logs
from workflow_engine.engine.run_events import RUN_AGGREGATE, RunEvent
from workflow_engine.errors import InvalidInput
from workflow_engine.events.projections import Projection
from workflow_engine.events.storable import check_document, storable_text
from workflow_engine.events.store import RecordedEvent

MAX_ENTRIES_PER_ATTEMPT = 1000
MAX_MESSAGE_CHARS = 4000
MAX_FIELDS_CHARS = 16_000
LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LogEntry:
    id: str
    position: int
    entry: int
    step_id: str | None
    attempt: int | None
    level: str
    message: str
    fields: dict[str, Any]
    logged_at: datetime


def entries_of(event: RecordedEvent) -> list[LogEntry]:
    """The log entries a run event stands for (none for most)."""
    data = event.data
    step, attempt = data.get("step_id"), data.get("attempt")

    def entry(index: int, level: str, message: str, fields: dict[str, Any] | None = None,
              at: datetime | None = None) -> LogEntry:  # fmt: skip
        return LogEntry(
            id=f"{event.position}.{index}", position=event.position, entry=index,
            step_id=step, attempt=attempt, level=level, message=message,
            fields=fields or {}, logged_at=at or event.recorded_at,
        )  # fmt: skip

    match event.event_type:
        case RunEvent.step_logged:
            return [
                entry(index, item["level"], item["message"], item.get("fields"),
                      datetime.fromisoformat(item["at"]))
                for index, item in enumerate(data.get("entries", []))
            ]  # fmt: skip
        case RunEvent.triggered:
            definition = data["definition"]
            message = f"run of {definition['name']} version {definition['version']} queued"
            replay = data.get("replay")
            if replay is None:
                return [entry(0, "info", message)]
            of, reused = replay["of"], replay["reused"]
            message += f": a replay of run {of} from {replay['from_step']}"
            message += f", reusing {', '.join(reused) or 'nothing'}"
            return [entry(0, "info", message, {"replay_of": of, "reused": reused})]
        case RunEvent.step_started:
            return [entry(0, "info", f"step {step} started (attempt {attempt})")]
        case RunEvent.step_waiting:
            return [entry(0, "info", f"step {step} {_waiting_for(data)}")]
        case RunEvent.step_completed:
            return [entry(0, "info", f"step {step} completed",
                          {"duration_ms": data.get("duration_ms")})]  # fmt: skip
        case RunEvent.step_failed:
            error = data.get("error") or {}
            retry = f"; retrying at {data['retry_at']}" if data.get("retry_at") else ""
            level = "warning" if retry else "error"
            return [entry(0, level, f"step {step} failed: {error.get('message')}{retry}",
                          {"error": error})]  # fmt: skip
        case RunEvent.step_skipped:
            return [entry(0, "info", f"step {step} skipped: {data.get('reason')}")]
        case RunEvent.step_cancelled:
            return [entry(0, "info", f"step {step} cancelled")]
        case RunEvent.completed:
            return [entry(0, "info", "run completed")]
        case RunEvent.failed:
            error = data.get("error") or {}
            return [entry(0, "error", f"run failed: {error.get('message')}", {"error": error})]
        case RunEvent.cancelled:
            return [entry(0, "info", "run cancelled")]
        case RunEvent.retried:
            steps = ", ".join(data.get("steps", ()))
            return [entry(0, "info", f"retried by {event.metadata.get('actor')}: {steps}")]
        case RunEvent.cancel_requested:
            return [entry(0, "info", f"cancel requested by {event.metadata.get('actor')}")]
    return []


class RunLogsProjection(Projection):
    name = "run_logs"
    version = 1
    tables = (run_logs,)
    reads_before_writing = False  # inserts only

    def wants(self, event: RecordedEvent) -> bool:
        return event.aggregate_type == RUN_AGGREGATE

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        entries = entries_of(event)
        if not entries:
            return
        await conn.execute(
            run_logs.insert(),
            [
                {
                    "run_id": uuid.UUID(event.aggregate_id), "position": e.position,
                    "entry": e.entry, "tenant_id": event.tenant_id, "step_id": e.step_id,
                    "attempt": e.attempt, "level": e.level, "message": e.message,
                    "fields": e.fields, "logged_at": e.logged_at,
                }
                for e in entries
            ],
        )  # fmt: skip


async def read_entries(
    conn: AsyncConnection, run_id: uuid.UUID, *, after: tuple[int, int] | None, limit: int
) -> list[LogEntry]:
    log = run_logs.c
    stmt = (
        select(run_logs).where(log.run_id == run_id).order_by(log.position, log.entry).limit(limit)
    )
    if after is not None:
        stmt = stmt.where(tuple_(log.position, log.entry) > tuple_(*after))
    return [
        LogEntry(
            id=f"{row.position}.{row.entry}",
            position=row.position,
            entry=row.entry,
            step_id=row.step_id,
            attempt=row.attempt,
            level=row.level,
            message=row.message,
            fields=row.fields,
            logged_at=row.logged_at,
        )
        for row in await conn.execute(stmt)
    ]


class RunLogBuffer:
    """`ctx.log` for one step attempt: keeps entries for the worker to append, and mirrors
    them to the process log with the run's context."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._pending: list[dict[str, Any]] = []
        self._count = 0

    def debug(self, message: str, **fields: Any) -> None:
        self._add("debug", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._add("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._add("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._add("error", message, fields)

    def drain(self) -> list[dict[str, Any]]:
        pending, self._pending = self._pending, []
        return pending

    def _add(self, level: str, message: str, fields: dict[str, Any]) -> None:
        # Under one key: a node's field named like a logger argument (`event`) cannot clash.
        getattr(self._logger, level)(message, node_fields=fields)
        self._count += 1
        if self._count > MAX_ENTRIES_PER_ATTEMPT:
            return  # the process log still has it; the run's log keeps the first thousand
        self._pending.append({
            "level": level, "message": storable_text(str(message))[:MAX_MESSAGE_CHARS],
            "fields": _storable_fields(fields), "at": datetime.now(UTC).isoformat(),
        })  # fmt: skip

    def restore(self, entries: list[dict[str, Any]]) -> None:
        """Put back entries whose append did not commit (they go out with the next one)."""
        self._pending[:0] = entries


def _storable_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as JSON every database stores, or a note saying why they could not be."""
    try:
        encoded = json.dumps(fields, default=str, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return {"unstorable": "the fields held a value JSON cannot carry"}
    if len(encoded) > MAX_FIELDS_CHARS:
        return {"truncated": True}
    decoded: dict[str, Any] = json.loads(encoded)
    try:
        check_document("fields", decoded)
    except InvalidInput as exc:
        return {"unstorable": exc.detail}
    return decoded


def _waiting_for(data: dict[str, Any]) -> str:
    """What a waiting step waits for, in words: its event, child run or approval, and until
    when (a wait without a deadline waits for as long as it takes)."""
    if "approval_id" in data:
        what = "waiting for an approval"
    elif "child_run_id" in data:
        what = f"waiting for child run {data['child_run_id']}"
    elif "event" in data:
        what = f"waiting for event {data['event']}"
    else:
        what = "waiting"
    return what if data["until"] is None else f"{what} until {data['until']}"
