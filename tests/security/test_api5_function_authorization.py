"""API5, broken function-level authorisation: the role matrix, walked route by route.

For every operation of the route table and every role, the answer is 403 exactly where the
role lacks the operation's declared permission (auth/permissions.py). An operation that
declares no permission must be on the explicit public list, and answers without credentials.
A client also may not reach the engine's own functions by writing their events.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from tests.integration.conftest import Accounts
from tests.security.conftest import (
    PUBLIC_OPERATIONS,
    PUBLIC_SAMPLES,
    Operation,
    Tenant,
    bearer,
    operations,
)
from workflow_engine.api.events import SERVER_EVENT_TYPES
from workflow_engine.auth.permissions import Role, allows

# Query strings that make an allowed call end at once (a live stream would never end): the
# permission is checked before any parameter.
QUERIES = {("GET", "/api/v1/events/stream"): "?after=-1"}
# Routes outside the API's own operations, and why they may answer without credentials.
OTHER_ROUTES = {
    "/api/v1/openapi.json": "the API description, public by design",
    "/demo/mcp/helpscout": "demo MCP server (development only, off in production)",
    "/demo/mcp/notion": "demo MCP server (development only, off in production)",
    "/demo/mcp/slack": "demo MCP server (development only, off in production)",
    "/mcp": "the MCP server: authenticates each request itself (api/security.py's Authorise) "
    "and checks each tool's permission (tests/integration/test_mcp_server.py)",
}


def _secured(app: FastAPI) -> list[Operation]:
    return [op for op in operations(app) if op.permission is not None]


def test_every_operation_declares_a_permission_or_is_public(app: FastAPI) -> None:
    undeclared = [
        f"{op.method} {op.path}"
        for op in operations(app)
        if op.permission is None and (op.method, op.path) not in PUBLIC_OPERATIONS
    ]
    assert not undeclared, f"operations with no permission, not listed as public: {undeclared}"
    others = [
        getattr(route, "path", repr(route))
        for route in app.routes
        if not hasattr(route, "dependant") and getattr(route, "path", None) not in OTHER_ROUTES
    ]
    assert not others, f"routes outside the API's operations, not accounted for: {others}"
    assert all(
        isinstance(r, Mount) for r in app.routes if getattr(r, "path", "").startswith("/demo")
    )


async def test_public_operations_answer_without_credentials(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    for method, path in PUBLIC_OPERATIONS:
        if method != "GET":
            continue
        url = path.format(**PUBLIC_SAMPLES.get(path, {}))
        response = await client.get(url, follow_redirects=True)
        assert response.status_code == 200, f"{url}: {response.status_code}"


async def test_secured_operations_want_credentials(app: FastAPI, client: httpx.AsyncClient) -> None:
    wrong = []
    for op in _secured(app):
        url = op.url({name: str(uuid.uuid4()) for name in op.parameters})
        response = await client.request(op.method, url)
        if response.status_code != 401 or "www-authenticate" not in response.headers:
            wrong.append(f"{op.method} {url}: {response.status_code}")
    assert not wrong, wrong


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("credential", ["token", "api_key"])
async def test_each_role_is_refused_exactly_where_the_matrix_says(
    app: FastAPI,
    client: httpx.AsyncClient,
    accounts: Accounts,
    alice: Tenant,
    role: Role,
    credential: str,
) -> None:
    if credential == "token":
        headers = bearer(await accounts.token(role, alice.name))
    else:
        made = await client.post("/api/v1/auth/api-keys", headers=alice.headers(),
                                 json={"name": f"matrix-{role}", "role": role})  # fmt: skip
        headers = {"X-API-Key": made.json()["key"]}
    wrong = []
    # Logout last: it ends the credential the rest of the walk uses.
    walk = sorted(_secured(app), key=lambda op: op.path == "/api/v1/auth/logout")
    for op in walk:
        assert op.permission is not None
        # Ids of nothing, bodies of nothing: the walk must not change the tenant's objects.
        url = op.url({name: str(uuid.uuid4()) for name in op.parameters})
        url += QUERIES.get((op.method, op.path), "")
        body: dict[str, Any] | None = {} if op.method in ("POST", "PATCH", "PUT") else None
        response = await client.request(op.method, url, headers=headers, json=body)
        expected_forbidden = not allows(role, op.permission)
        if (response.status_code == 403) != expected_forbidden or response.status_code == 401:
            wrong.append(
                f"{op.method} {op.path} needs {op.permission}; {role} got "
                f"{response.status_code}: {response.text[:120]}"
            )
        elif expected_forbidden:
            assert str(op.permission) in response.json()["detail"]
    assert not wrong, "\n".join(wrong)


async def test_the_openapi_document_names_each_operations_permission(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    for op in operations(app):
        if op.method == "HEAD":
            continue
        operation = document["paths"].get(op.path, {}).get(op.method.lower())
        if operation is None:
            continue  # not documented (the Swagger page's own files)
        security = operation.get("security", [])
        if op.permission is None:
            assert not security, f"{op.method} {op.path} is public but documents {security}"
        else:
            assert {"bearerAuth": [str(op.permission)]} in security, f"{op.method} {op.path}"


# --- the engine's functions, through forged events --------------------------------------------


async def test_clients_cannot_write_the_servers_event_types(
    client: httpx.AsyncClient, alice: Tenant
) -> None:
    """A `WorkflowTriggered`, `StepCompleted` or `UserCreated` of a client's making would read,
    in the audit trail and the live stream, like the engine's own."""
    seen = (await client.get("/api/v1/events", headers=alice.headers(),
                             params={"limit": 200})).json()["items"]  # fmt: skip
    written = {event["event_type"] for event in seen if event["aggregate_type"] != "order"}
    # The world wrote runs, users, keys, schedules and services: each of their types is refused.
    assert {"WorkflowTriggered", "StepCompleted", "UserCreated", "ApiKeyCreated",
            "ScheduleCreated", "ServiceRegistered"} <= written  # fmt: skip
    tried = written | {"UserChanged", "UserDeactivated", "WorkflowCancelled", "workflowcompleted",
                       "LOGINSUCCEEDED", "RefreshTokenReused", "ServiceStatusChanged"}  # fmt: skip
    accepted = []
    for event_type in sorted(tried):
        response = await client.post(
            "/events",
            headers=alice.headers(Role.operator),
            json={"aggregate_type": "order", "aggregate_id": f"forged-{uuid.uuid4().hex[:8]}",
                  "event_type": event_type, "data": {"role": "admin"}},
        )  # fmt: skip
        if response.status_code != 403:
            accepted.append(f"{event_type}: {response.status_code}")
    assert not accepted, accepted
    forged = await client.get("/api/v1/events", headers=alice.headers(),
                              params={"aggregate_type": "order", "limit": 200})  # fmt: skip
    assert {e["event_type"] for e in forged.json()["items"]} == {"OrderPlaced"}
    assert all(name.lower() in SERVER_EVENT_TYPES for name in written)


async def test_clients_cannot_write_to_the_servers_aggregates(
    client: httpx.AsyncClient, alice: Tenant
) -> None:
    run_id = alice.ids["workflow_id"]
    attempts = [
        ("runs", run_id, "Note", 403),
        ("users", alice.ids["user_id"], "Note", 403),
        ("system.anything", "x", "Note", 403),
        ("workflow_engine.x", "x", "Note", 403),
        # A client type on a run's id is not the run's aggregate: refused, not mixed in.
        ("order", run_id, "Note", 409),
    ]
    for aggregate_type, aggregate_id, event_type, status in attempts:
        response = await client.post(
            "/events",
            headers=alice.headers(),
            json={"aggregate_type": aggregate_type, "aggregate_id": aggregate_id,
                  "event_type": event_type, "data": {}},
        )  # fmt: skip
        assert response.status_code == status, (aggregate_type, response.text)
    run = await client.get(f"/api/v1/events/{run_id}", headers=alice.headers())
    assert {event["aggregate_type"] for event in run.json()["items"]} == {"runs"}


async def test_server_metadata_cannot_be_forged(client: httpx.AsyncClient, alice: Tenant) -> None:
    aggregate = f"order-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/events",
        headers=alice.headers(Role.operator),
        json={"aggregate_type": "order", "aggregate_id": aggregate, "event_type": "Noted",
              "data": {}, "metadata": {"actor": "system:registry-checker", "source": "engine",
                                       "client_address": "10.0.0.1", "mine": 1}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    [event] = (await client.get(f"/api/v1/events/{aggregate}", headers=alice.headers())).json()[
        "items"
    ]
    assert event["metadata"]["actor"].startswith("user:")
    assert event["metadata"]["source"] == "api"
    assert event["metadata"]["client_address"] != "10.0.0.1"
    assert event["metadata"]["mine"] == 1
