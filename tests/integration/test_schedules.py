"""`/api/v1/schedules`: workflows started on a cron expression or an interval, on SQLite and
PostgreSQL, through the API — and each tick starting one run however many servers look."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.db.tables import schedules

WORKFLOWS = [
    {"name": "ping", "input_schema": {"type": "object", "required": ["who"]},
     "steps": [{"id": "only", "uses": "transform", "with": {"hello": "{{ input.who }}"}}],
     "output": "{{ steps.only.output }}"},
]  # fmt: skip


@dataclass
class Api:
    client: httpx.AsyncClient
    accounts: Accounts
    operator: dict[str, str]
    viewer: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        yield Api(client, accounts, *[
            {"Authorization": f"Bearer {await accounts.token(role, tenant)}"}
            for role in (Role.operator, Role.viewer, Role.admin)
        ])  # fmt: skip


def _every_second(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "workflow_name": "ping", "data": {"who": name},
            "interval_seconds": 1, **fields}  # fmt: skip


async def _scheduled_runs(
    client: httpx.AsyncClient, admin: dict[str, str], schedule_id: str
) -> list[dict[str, Any]]:
    """The `WorkflowTriggered` events of the runs the schedule started (the tenant's log)."""
    page = await client.get("/api/v1/events", headers=admin, params={
        "event_type": "WorkflowTriggered", "actor": f"schedule:{schedule_id}", "limit": 200,
    })  # fmt: skip
    assert page.status_code == 200, page.text
    return list(page.json()["items"])


async def test_an_interval_schedule_starts_one_run_per_tick_within_its_bounds(api: Api) -> None:
    client, operator, viewer = api.client, api.operator, api.viewer
    start = datetime.now(UTC) + timedelta(seconds=1)
    body = _every_second("bounded", start_at=start.isoformat(),
                         end_at=(start + timedelta(seconds=3)).isoformat())  # fmt: skip
    created = await client.post("/api/v1/schedules", headers=operator, json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert created.headers["location"] == f"/api/v1/schedules/{schedule['id']}"
    assert [datetime.fromisoformat(t) for t in schedule["next_fire_times"]] == [
        start + timedelta(seconds=k) for k in range(3)
    ]
    await asyncio.sleep(4.5)
    runs = await _scheduled_runs(client, api.admin, schedule["id"])
    assert {e["metadata"]["schedule_id"] for e in runs} == {schedule["id"]}
    ticks = sorted(datetime.fromisoformat(e["metadata"]["scheduled_for"]) for e in runs)
    assert ticks == [start + timedelta(seconds=k) for k in range(3)]
    assert {e["metadata"]["actor"] for e in runs} == {f"schedule:{schedule['id']}"}
    assert {e["metadata"]["source"] for e in runs} == {"schedule"}
    after = (await client.get(f"/api/v1/schedules/{schedule['id']}", headers=viewer)).json()
    assert after["next_fire_times"] == []
    assert datetime.fromisoformat(after["last_fired_at"]) == ticks[-1]
    assert after["last_run_id"] in {e["aggregate_id"] for e in runs}


async def test_two_servers_start_each_tick_once(database_url: str, tmp_path: Path) -> None:
    first = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    second = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(first) as client, running(second):
        accounts = Accounts(first, client)
        headers = {"Authorization": f"Bearer {await accounts.token(Role.admin)}"}
        start = datetime.now(UTC) + timedelta(seconds=1)
        body = _every_second("shared", start_at=start.isoformat(),
                             end_at=(start + timedelta(seconds=5)).isoformat())  # fmt: skip
        schedule = (await client.post("/api/v1/schedules", headers=headers, json=body)).json()
        await asyncio.sleep(6.5)
        runs = await _scheduled_runs(client, headers, schedule["id"])
    per_tick = Counter(e["metadata"]["scheduled_for"] for e in runs)
    assert len(per_tick) == 5
    assert set(per_tick.values()) == {1}  # 5 runs, not 10


async def test_pause_resume_change_and_delete_are_events(api: Api) -> None:
    client, operator, viewer = api.client, api.operator, api.viewer
    body = {"name": "daily", "workflow_name": "ping", "data": {"who": "team"},
            "cron": "30 8 * * 1-5", "timezone": "Europe/Paris"}  # fmt: skip
    schedule = (await client.post("/api/v1/schedules", headers=operator, json=body)).json()
    url = f"/api/v1/schedules/{schedule['id']}"
    for tick in schedule["next_fire_times"]:
        local = datetime.fromisoformat(tick).astimezone(ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (8, 30)
        assert local.isoweekday() <= 5

    paused = (await client.patch(url, headers=operator, json={"paused": True})).json()
    assert (paused["paused"], paused["next_fire_times"]) == (True, [])
    resumed = (await client.patch(url, headers=operator, json={"paused": False})).json()
    assert resumed["next_fire_times"] == schedule["next_fire_times"]
    changed = await client.patch(url, headers=operator, json={"interval_seconds": 3600})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["cron"], changed.json()["interval_seconds"]) == (None, 3600)
    assert (await client.delete(url, headers=operator)).status_code == 204
    assert (await client.get(url, headers=viewer)).status_code == 404

    events = (await client.get(f"/api/v1/events/{schedule['id']}", headers=viewer)).json()
    kinds = [e["event_type"] for e in events["items"]]
    assert kinds == ["ScheduleCreated", "SchedulePaused", "ScheduleResumed", "ScheduleUpdated",
                     "ScheduleDeleted"]  # fmt: skip
    assert events["items"][3]["data"] == {"cron": None, "interval_seconds": 3600}


async def test_bad_schedules_are_refused_with_the_field(api: Api) -> None:
    client, operator, viewer = api.client, api.operator, api.viewer
    base = {"name": "bad", "workflow_name": "ping", "data": {"who": "x"}, "cron": "0 9 * * *"}
    for change, field in (
        ({"cron": "every day"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": None, "interval_seconds": 0.5}, "interval_seconds"),
        ({"workflow_name": "nope"}, "workflow_name"),
        ({"data": {}}, "data"),
        ({"start_at": "2030-01-01T00:00:00"}, "start_at"),  # no zone
        ({"start_at": 0}, "start_at"),  # not Unix time: the document says a date-time
        ({"end_at": "1893456000"}, "end_at"),
        ({"start_at": "0001-01-01T00:00:00+01:00"}, "start_at"),  # before year 1 in UTC
        ({"end_at": "9999-12-31T23:59:59-01:00"}, "end_at"),  # after 9999 in UTC
        ({"catch_up": "sometimes"}, "catch_up"),
    ):
        answer = await client.post("/api/v1/schedules", headers=operator, json={**base, **change})
        assert answer.status_code == 422, (change, answer.text)
        locations = [error["loc"] for error in answer.json()["errors"]]
        assert any(field in loc for loc in locations), (change, locations)
    refused = await client.post("/api/v1/schedules", headers=viewer, json=base)
    assert refused.status_code == 403
    first = await client.post("/api/v1/schedules", headers=operator, json=base)
    assert first.status_code == 201
    again = await client.post("/api/v1/schedules", headers=operator, json=base)
    assert again.status_code == 409


async def test_a_schedule_whose_ticks_fall_past_the_year_9999_has_none_left(api: Api) -> None:
    client, operator = api.client, api.operator
    base = {"workflow_name": "ping", "data": {"who": "x"}, "start_at": "9999-12-31T23:00:00Z"}
    for name, timing, ticks in (
        # 23:30 at UTC+14 is 09:30 UTC: that of 9999-12-31 is before `start_at`, the next
        # one is in the year 10000.
        ("cron", {"cron": "30 23 * * *", "timezone": "Pacific/Kiritimati"}, []),
        ("interval", {"interval_seconds": 86400}, ["9999-12-31T23:00:00Z"]),
    ):
        created = await client.post(
            "/api/v1/schedules", headers=operator, json={"name": name, **base, **timing}
        )
        assert created.status_code == 201, created.text
        assert created.json()["next_fire_times"] == ticks, timing
        url = f"/api/v1/schedules/{created.json()['id']}"
        changed = await client.patch(
            url, headers=operator, json={"start_at": "9999-12-31T23:59:59Z"}
        )
        assert changed.status_code == 200, changed.text
    last = await client.post("/api/v1/schedules", headers=operator, json={
        "name": "last", **base, "start_at": "9999-12-30T00:00:00Z", "interval_seconds": 43200,
    })  # fmt: skip
    assert last.status_code == 201, last.text
    assert last.json()["next_fire_times"] == [
        "9999-12-30T00:00:00Z", "9999-12-30T12:00:00Z", "9999-12-31T00:00:00Z",
        "9999-12-31T12:00:00Z",
    ]  # fmt: skip


async def test_schedules_are_the_tenants_own(api: Api) -> None:
    client = api.client
    schedule = (await client.post("/api/v1/schedules", headers=api.operator,
                                  json=_every_second("mine", paused=True))).json()  # fmt: skip
    other = {"Authorization": f"Bearer {await api.accounts.token(Role.admin)}"}
    url = f"/api/v1/schedules/{schedule['id']}"
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.patch(url, headers=other, json={"paused": False})).status_code == 404
    assert (await client.delete(url, headers=other)).status_code == 404
    assert (await client.get("/api/v1/schedules", headers=other)).json()["items"] == []


async def test_ticks_missed_while_down_follow_the_catch_up_policy(api: Api) -> None:
    """Two hourly schedules whose next tick is three hours and a bit behind, as after a server
    that was down: `skip` starts nothing and records the missed ticks, `run_once` starts one
    run, for the last missed tick; both go on at the next tick from now."""
    client = api.client
    db = api.accounts.db
    now = datetime.now(UTC)
    behind = now - timedelta(hours=3, minutes=10)
    ids = {}
    for policy in ("skip", "run_once"):
        body = {"name": f"hourly-{policy}", "workflow_name": "ping", "data": {"who": policy},
                "interval_seconds": 3600, "start_at": behind.isoformat(), "catch_up": policy,
                "paused": True}  # fmt: skip
        created = await client.post("/api/v1/schedules", headers=api.operator, json=body)
        ids[policy] = created.json()["id"]
    async with db.transaction() as conn:  # the ticks the servers missed while down
        await conn.execute(
            schedules.update().where(schedules.c.id.in_([uuid.UUID(i) for i in ids.values()]))
            .values(paused=False, next_fire_at=behind)
        )  # fmt: skip
    async with asyncio.timeout(15):
        while True:
            views = [(await client.get(f"/api/v1/schedules/{i}", headers=api.viewer)).json()
                     for i in ids.values()]  # fmt: skip
            if all(datetime.fromisoformat(v["next_fire_times"][0]) > now for v in views):
                break
            await asyncio.sleep(0.1)
    assert await _scheduled_runs(client, api.admin, ids["skip"]) == []
    [once] = await _scheduled_runs(client, api.admin, ids["run_once"])
    assert datetime.fromisoformat(once["metadata"]["scheduled_for"]) == behind + timedelta(hours=3)
    events = (await client.get(f"/api/v1/events/{ids['skip']}", headers=api.viewer)).json()
    [missed] = [e for e in events["items"] if e["event_type"] == "ScheduleTicksMissed"]
    assert missed["data"]["missed"] == 4  # behind, +1 h, +2 h, +3 h
