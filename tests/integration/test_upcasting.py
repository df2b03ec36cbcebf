"""Old event versions are read in the current shape; the stored events stay as written."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.db import Database
from workflow_engine.events import EventStore, NewEvent
from workflow_engine.events.upcasting import Upcasters


def item_added_upcasters() -> Upcasters:
    upcasters = Upcasters()

    @upcasters.register("ItemAdded", from_version=1)
    def _rename(data: dict[str, Any]) -> dict[str, Any]:  # v1 -> v2: `n` became `count`
        return {"count": data["n"]}

    @upcasters.register("ItemAdded", from_version=2)
    def _unit(data: dict[str, Any]) -> dict[str, Any]:  # v2 -> v3: a unit was added
        return {**data, "unit": "piece"}

    return upcasters


async def test_a_v1_event_is_read_as_the_current_version(
    database: Database, tenant_id: uuid.UUID
) -> None:
    upcasters = item_added_upcasters()
    assert upcasters.current_version("ItemAdded") == 3
    store = EventStore(database, upcasters)
    await store.append(
        tenant_id=tenant_id, aggregate_type="order", aggregate_id="o-1",
        new_events=[NewEvent("ItemAdded", {"n": 2}, schema_version=1),
                    NewEvent("ItemAdded", {"count": 5, "unit": "kg"}, schema_version=3)],
        expected_version=0,
    )  # fmt: skip
    old, current = await store.read_aggregate(tenant_id, "o-1")
    assert (old.schema_version, old.data) == (3, {"count": 2, "unit": "piece"})
    assert (current.schema_version, current.data) == (3, {"count": 5, "unit": "kg"})
    raw = await EventStore(database).read_aggregate(tenant_id, "o-1")
    assert (raw[0].schema_version, raw[0].data) == (1, {"n": 2})  # the log is never rewritten


def test_a_step_cannot_be_registered_twice() -> None:
    upcasters = item_added_upcasters()
    with pytest.raises(ValueError, match="already has an upcaster"):
        upcasters.register("ItemAdded", from_version=1)(lambda data: data)


async def test_the_http_api_serves_upcast_events(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, upcasters=item_added_upcasters())
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        headers = {"Authorization": f"Bearer {token}"}
        await client.post(
            "/events",
            headers=headers,
            json={"aggregate_type": "order", "aggregate_id": "o-9", "event_type": "ItemAdded",
                  "data": {"n": 7}},
        )  # fmt: skip
        [event] = (await client.get("/api/v1/events/o-9", headers=headers)).json()["items"]
    assert event["schema_version"] == 3
    assert event["data"] == {"count": 7, "unit": "piece"}
