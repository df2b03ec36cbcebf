"""API1, broken object-level authorisation: another tenant's ids behave as ids that do not exist.

Every operation with a path parameter is called by tenant B (Mallory) with tenant A's (Alice's)
ids: each must answer 404, never 403 (which would confirm the id) and never the object. The
operations come from the app's route table, so a new route with an id fails the coverage test
until it is added here.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.security.conftest import Tenant, operations, raw_request
from workflow_engine.auth.permissions import Role

# A body that the operation would accept for an object of the caller's own, so that the
# answer is about the id and not about the body.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/users/{user_id}"): {"role": "operator"},
    ("PATCH", "/api/v1/schedules/{schedule_id}"): {"paused": False, "name": "taken-over"},
    ("POST", "/api/v1/workflows/{workflow_id}/approve"): {"step": "review", "data": "taken"},
    ("POST", "/api/v1/workflows/{workflow_id}/reject"): {"step": "review"},
    ("POST", "/api/v1/workflows/{workflow_id}/replay"): {"from_step": "first"},
}
# Path parameters that name something shared by every tenant, not an object of one.
SHARED = {
    ("GET", "/api/v1/workflows/templates/{name}"),
    ("GET", "/swagger-ui/{asset}"),  # the documentation page's static files
    # The dashboard: its shell is the same for every path, and its files are everyone's; the
    # run or template a page names is read through the API, as its caller.
    ("GET", "/ui/runs/{run_id}"),
    ("GET", "/ui/templates/{name}"),
    ("GET", "/ui/static/{asset}"),
}


def _id_operations(app: FastAPI) -> list[tuple[str, str]]:
    return [(op.method, op.path) for op in operations(app) if op.parameters and op.method != "HEAD"]


def test_every_operation_with_an_id_is_covered(app: FastAPI, alice: Tenant) -> None:
    missing = [
        f"{method} {path}"
        for method, path in _id_operations(app)
        if (method, path) not in SHARED and not all(name in alice.ids for name in _parameters(path))
    ]
    assert not missing, f"operations whose ids this suite does not try across tenants: {missing}"


def _parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@pytest.mark.parametrize("role", [Role.admin, Role.service])
async def test_another_tenants_ids_are_not_found(
    app: FastAPI, client: httpx.AsyncClient, alice: Tenant, mallory: Tenant, role: Role
) -> None:
    wrong: list[str] = []
    headers = mallory.headers(role) if role is Role.admin else {"X-API-Key": mallory.api_key}
    for method, path in _id_operations(app):
        if (method, path) in SHARED:
            continue
        url = path.format(**alice.ids)
        body = BODIES.get((method, path))
        response = await client.request(
            method, url, headers=headers, json=body if body is not None else None
        )
        if response.status_code == 403 and role is Role.service:
            continue  # the role may not call it at all: told before any id is looked at
        if response.status_code != 404 or alice.ids[_parameters(path)[0]] in _echo_free(response):
            wrong.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


def _echo_free(response: httpx.Response) -> str:
    """The answer without its `instance` (the path the caller sent, ids and all)."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("instance", "detail")}
    return str(body)


async def test_the_victims_objects_are_untouched(
    client: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    """After Mallory's attempts (above), Alice still reads every object as it was."""
    admin = alice.headers()
    reads = {
        "user_id": "/api/v1/users/{user_id}",
        "schedule_id": "/api/v1/schedules/{schedule_id}",
        "service_id": "/api/v1/registry/services/{service_id}",
        "workflow_id": "/api/v1/workflows/{workflow_id}/status",
        "aggregate_id": "/api/v1/events/{aggregate_id}",
    }
    for _name, path in reads.items():
        response = await client.get(path.format(**alice.ids), headers=admin)
        assert response.status_code == 200, f"{path}: {response.text}"
    user = (await client.get(f"/api/v1/users/{alice.ids['user_id']}", headers=admin)).json()
    assert user["role"] == "viewer"
    assert user["is_active"]
    schedule = await client.get(f"/api/v1/schedules/{alice.ids['schedule_id']}", headers=admin)
    assert schedule.json()["name"] == "nightly"
    keys = (await client.get("/api/v1/auth/api-keys", headers=admin)).json()["items"]
    assert [k["revoked_at"] for k in keys if k["id"] == alice.ids["key_id"]] == [None]
    run = await client.get(f"/api/v1/workflows/{alice.ids['workflow_id']}/status", headers=admin)
    assert run.json()["status"] == "completed"


async def test_lists_and_streams_show_nothing_of_another_tenant(
    client: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    lists = [
        "/api/v1/workflows",
        "/api/v1/users",
        "/api/v1/auth/api-keys",
        "/api/v1/schedules",
        "/api/v1/registry/services",
        "/api/v1/registry/health",
        "/api/v1/events",
        "/api/v1/aggregates",
        f"/api/v1/events?actor=user:{alice.ids['user_id']}",
    ]
    for path in lists:
        response = await client.get(path, headers=mallory.headers())
        assert response.status_code in (200, 422), f"{path}: {response.text}"
        for value in alice.ids.values():
            assert value not in response.text, f"{path} shows {value} of another tenant"


async def test_streams_show_nothing_of_another_tenant(
    app: FastAPI, client: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    """Mallory follows Alice's run by id from the start of the log. The stream replays
    Mallory's own events in order, so once her marker arrives everything before it has been
    considered, and none of it is Alice's."""
    token = f"Bearer {mallory.tokens[Role.viewer]}".encode()
    streams = [
        await raw_request(
            app,
            "GET",
            "/api/v1/events/stream",
            query=query.encode(),
            headers=[(b"authorization", token)],
        )
        for query in ("after=0", f"after=0&aggregate_id={alice.ids['workflow_id']}")
    ]
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    try:
        appended = await client.post(
            "/events", headers=mallory.headers(Role.operator),
            json={"aggregate_type": "order", "aggregate_id": marker, "event_type": "Marked",
                  "data": {}},
        )  # fmt: skip
        assert appended.status_code == 201
        async with asyncio.timeout(10):
            while marker.encode() not in streams[0].body:  # noqa: ASYNC110  # bytes, not an event
                await asyncio.sleep(0.02)
    finally:
        for stream in streams:
            await stream.close()
    assert [stream.status for stream in streams] == [200, 200]
    for stream in streams:
        for value in alice.ids.values():
            assert value.encode() not in stream.body
    assert marker.encode() not in streams[1].body  # the filter held: only that aggregate
    follow = await client.get(
        f"/api/v1/workflows/{alice.ids['workflow_id']}/logs",
        headers=mallory.headers(), params={"follow": "true"},
    )  # fmt: skip
    assert follow.status_code == 404
