"""The event log as a service: tenant-confined reads, upcast to the current event shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from workflow_engine.db import Database
from workflow_engine.db.read_statements import AGGREGATE_PAGE
from workflow_engine.db.single_statement import JsonPage, fetch_row
from workflow_engine.events.append import append_events
from workflow_engine.events.catalogue import AggregateSummary, list_aggregates
from workflow_engine.events.store import (
    LogKey,
    NewEvent,
    RecordedEvent,
    Snapshot,
    last_position,
    log_head,
    log_key,
    read_aggregate,
    read_log,
    read_snapshot,
    save_snapshot,
    search_events,
)
from workflow_engine.events.upcasting import Upcasters


@dataclass(frozen=True)
class AggregateFold:
    """How to fold an aggregate's events into its state.

    `kind` names the state's shape and goes into the snapshot's key: change it whenever
    `apply` changes, and old snapshots are ignored instead of misread.
    """

    kind: str
    initial: Callable[[], dict[str, Any]]
    apply: Callable[[dict[str, Any], RecordedEvent], dict[str, Any]]


@dataclass(frozen=True)
class LoadedAggregate:
    state: dict[str, Any]
    version: int
    events_read: int  # events folded on top of the snapshot (or of the initial state)
    snapshot_version: int | None


class EventStore:
    """The event log as a service: reads confined to a tenant and upcast to current shapes.

    Code that must update read models atomically with its events calls `append_events`
    inside its own transaction instead of `append`.
    """

    def __init__(
        self, db: Database, upcasters: Upcasters | None = None, *, snapshot_every: int = 100
    ) -> None:
        self.db = db
        self.upcasters = upcasters or Upcasters()
        self.snapshot_every = snapshot_every

    async def append(
        self,
        *,
        tenant_id: uuid.UUID,
        aggregate_type: str,
        aggregate_id: str,
        new_events: Sequence[NewEvent],
        expected_version: int | None,
    ) -> list[RecordedEvent]:
        async with self.db.tenant_transaction(tenant_id) as conn:
            return await append_events(
                conn,
                tenant_id=tenant_id,
                aggregate_type=aggregate_type,
                aggregate_id=aggregate_id,
                new_events=new_events,
                expected_version=expected_version,
            )

    async def read_aggregate(
        self,
        tenant_id: uuid.UUID,
        aggregate_id: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        async with self.db.tenant_read(tenant_id) as conn:
            found = await read_aggregate(
                conn, tenant_id, aggregate_id, from_version=from_version, limit=limit
            )
        return [self.upcasters.apply(event) for event in found]

    async def aggregate_page(
        self, tenant_id: uuid.UUID, aggregate_id: str, *, from_version: int, limit: int
    ) -> JsonPage[int] | None:
        """A page of the aggregate's events from `from_version`, as the API answers it (JSON),
        in one statement; the next page's key is the version of the page's last event. None
        when the aggregate has no events at all."""
        known, items, next_version = await fetch_row(
            self.db, AGGREGATE_PAGE, tenant=tenant_id, aggregate_id=aggregate_id,
            from_version=from_version, limit=limit,
        )  # fmt: skip
        if not known:
            return None
        if not self.upcasters.empty:
            items = _upcast(self.upcasters, items)
        return JsonPage(items, next_version)

    async def read_log(
        self, *, after: int | LogKey = 0, limit: int = 500, tenant_id: uuid.UUID | None = None
    ) -> list[RecordedEvent]:
        """Follow the log from a position or key; confined to `tenant_id` when given
        (system-wide otherwise)."""
        reading = self.db.tenant_read(tenant_id) if tenant_id else self.db.read()
        async with reading as conn:
            found = await read_log(conn, after=after, limit=limit, tenant_id=tenant_id)
        return [self.upcasters.apply(event) for event in found]

    async def search(self, tenant_id: uuid.UUID, **filters: Any) -> list[RecordedEvent]:
        """`search_events` for one tenant (the audit view)."""
        async with self.db.tenant_read(tenant_id) as conn:
            found = await search_events(conn, tenant_id, **filters)
        return [self.upcasters.apply(event) for event in found]

    async def list_aggregates(
        self,
        tenant_id: uuid.UUID,
        *,
        aggregate_type: str | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[AggregateSummary]:
        """The tenant's aggregates from the catalogue read model, in id order."""
        async with self.db.tenant_read(tenant_id) as conn:
            return await list_aggregates(
                conn, tenant_id, aggregate_type=aggregate_type, after_id=after_id, limit=limit
            )

    async def log_head(self, tenant_id: uuid.UUID | None = None) -> LogKey:
        reading = self.db.tenant_read(tenant_id) if tenant_id else self.db.read()
        async with reading as conn:
            return await log_head(conn)

    async def log_key(self, tenant_id: uuid.UUID, position: int) -> LogKey:
        """Where a client's position (an SSE id) lies in log order, as the tenant sees it."""
        async with self.db.tenant_read(tenant_id) as conn:
            return await log_key(conn, position)

    async def last_position(self) -> int:
        async with self.db.read() as conn:
            return await last_position(conn)

    async def load(
        self, tenant_id: uuid.UUID, aggregate_id: str, fold: AggregateFold
    ) -> LoadedAggregate:
        """The aggregate's current state: its latest snapshot plus the events after it.

        When `snapshot_every` or more events had to be folded, a new snapshot is saved, so
        an aggregate with 10,000 events costs one snapshot and fewer than `snapshot_every`
        events to load from then on.
        """
        async with self.db.tenant_read(tenant_id) as conn:
            snapshot = await read_snapshot(conn, tenant_id, aggregate_id, fold.kind)
        state = dict(snapshot.state) if snapshot else fold.initial()
        version = snapshot.version if snapshot else 0
        folded = 0
        while True:
            batch = await self.read_aggregate(
                tenant_id, aggregate_id, from_version=version + 1, limit=_LOAD_BATCH
            )
            for event in batch:
                state = fold.apply(state, event)
                version = event.version
            folded += len(batch)
            if len(batch) < _LOAD_BATCH:
                break
        if folded >= self.snapshot_every:
            async with self.db.tenant_transaction(tenant_id) as conn:
                await save_snapshot(
                    conn, tenant_id, aggregate_id, fold.kind, Snapshot(version, state)
                )
        return LoadedAggregate(state, version, folded, snapshot.version if snapshot else None)


_LOAD_BATCH = 1000


def _upcast(upcasters: Upcasters, items: str) -> str:
    """The rendered events with their data in the current shapes (the one case where the
    page goes through Python objects: the upcasters are Python)."""
    events = json.loads(items)
    for event in events:
        event["data"], event["schema_version"] = upcasters.upcast(
            event["event_type"], event["schema_version"], event["data"]
        )
    return to_json(events).decode()
