"""The API's reads of runs — a run's status, the run list, a run's log — each one statement
(`db/read_statements.py`) whose answer is already the JSON the response carries.

The database renders the rows; Python only adds what SQL cannot say as Python would: the
LLM usage (summed from the outputs of the run's completed LLM steps, which come along in the
same statement) and the cursors.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workflow_engine.db import Database
from workflow_engine.db.read_statements import RUN_LOG_PAGE, RUN_PAGE, RUN_STATUS
from workflow_engine.db.single_statement import JsonPage, fetch_row
from workflow_engine.errors import NotFound

RunKey = tuple[datetime, uuid.UUID]
"""Where a page of the run list ends: the (created_at, id) of its last run."""


@dataclass(frozen=True)
class StatusDocument:
    """A run's status as JSON, every member of the response but `llm_usage` and `links`
    (in the response's order, they come last), and the outputs its usage is summed from."""

    document: str
    llm_outputs: list[Any]


async def read_status(db: Database, tenant_id: uuid.UUID, run_id: uuid.UUID) -> StatusDocument:
    document, llm_outputs = await fetch_row(db, RUN_STATUS, tenant=tenant_id, run=run_id)
    if document is None:
        raise NotFound(f"no run {run_id}")
    return StatusDocument(document, json.loads(llm_outputs) if llm_outputs else [])


async def read_run_page(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    workflow_name: str | None,
    since: datetime | None,
    until: datetime | None,
    before: RunKey | None,
    limit: int,
) -> JsonPage[RunKey]:
    """Newest first; `before` is where the previous page ended."""
    before_at, before_id = before or (None, None)
    items, next_at, next_id = await fetch_row(
        db, RUN_PAGE, tenant=tenant_id, status=status, workflow_name=workflow_name,
        since=since, until=until, before_at=before_at, before_id=before_id, limit=limit,
    )  # fmt: skip
    if next_at is None:
        return JsonPage(items, None)
    return JsonPage(items, (_moment(next_at), _uuid(next_id)))


async def read_log_page(
    db: Database,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    after: tuple[int, int] | None,
    limit: int,
) -> JsonPage[str]:
    """The run's log entries after the entry `after` (position, index), in order; 404 when
    the run is unknown here. A full page names its last entry's id."""
    after_position, after_entry = after or (None, None)
    known, items, last_id = await fetch_row(
        db, RUN_LOG_PAGE, tenant=tenant_id, run=run_id, after_position=after_position,
        after_entry=after_entry, limit=limit,
    )  # fmt: skip
    if not known:
        raise NotFound(f"no run {run_id}")
    return JsonPage(items, last_id)


def _moment(value: datetime | str) -> datetime:
    """An aware UTC datetime from asyncpg, or SQLite's naive UTC text."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
