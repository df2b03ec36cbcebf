"""Loading a long aggregate reads its snapshot plus the few events after it."""

from __future__ import annotations

import uuid
from typing import Any

from workflow_engine.db import Database
from workflow_engine.events import EventStore, NewEvent, RecordedEvent
from workflow_engine.events.service import AggregateFold


def _count(state: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
    return {"items": state["items"] + event.data["n"], "events": state["events"] + 1}


COUNTER = AggregateFold(kind="counter.v1", initial=lambda: {"items": 0, "events": 0}, apply=_count)


async def _append(store: EventStore, tenant_id: uuid.UUID, count: int) -> None:
    for start in range(0, count, 500):
        batch = [NewEvent("Counted", {"n": 1}) for _ in range(min(500, count - start))]
        await store.append(
            tenant_id=tenant_id, aggregate_type="counter", aggregate_id="c-1",
            new_events=batch, expected_version=None,
        )  # fmt: skip


async def test_ten_thousand_events_load_from_a_snapshot_afterwards(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database, snapshot_every=100)
    await _append(store, tenant_id, 10_000)

    first = await store.load(tenant_id, "c-1", COUNTER)
    assert first.state == {"items": 10_000, "events": 10_000}
    assert (first.version, first.events_read, first.snapshot_version) == (10_000, 10_000, None)

    await _append(store, tenant_id, 30)
    second = await store.load(tenant_id, "c-1", COUNTER)
    assert second.state == {"items": 10_030, "events": 10_030}
    assert second.snapshot_version == 10_000
    assert second.events_read == 30  # fewer than SNAPSHOT_EVERY, not 10,030


async def test_a_new_fold_kind_ignores_old_snapshots(
    database: Database, tenant_id: uuid.UUID
) -> None:
    store = EventStore(database, snapshot_every=10)
    await _append(store, tenant_id, 20)
    await store.load(tenant_id, "c-1", COUNTER)
    doubled = AggregateFold(
        kind="counter.v2",
        initial=lambda: {"items": 0, "events": 0},
        apply=lambda state, event: {"items": state["items"] + 2, "events": state["events"] + 1},
    )
    loaded = await store.load(tenant_id, "c-1", doubled)
    assert loaded.snapshot_version is None
    assert loaded.state == {"items": 40, "events": 20}
