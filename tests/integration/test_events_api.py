"""POST /events, an aggregate's events, and the audit trail, as clients use them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def order_event(n: int, **extra: object) -> dict[str, object]:
    return {
        "aggregate_type": "order",
        "aggregate_id": "order-1",
        "event_type": "ItemAdded",
        "data": {"n": n},
        **extra,
    }


async def test_append_and_read_back_in_order(accounts: Accounts) -> None:
    token = await accounts.token(Role.operator)
    client = accounts.client
    first = await client.post(
        "/events", headers=bearer(token), json=order_event(1, expected_version=0)
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["aggregate_id"], body["version"]) == ("order-1", 1)
    assert body["position"] > 0
    assert first.headers["location"] == "/api/v1/events/order-1"
    for n in (2, 3):
        await client.post("/events", headers=bearer(token), json=order_event(n))
    page = (await client.get("/api/v1/events/order-1?limit=2", headers=bearer(token))).json()
    rest = (
        await client.get(
            f"/api/v1/events/order-1?limit=2&cursor={page['next_cursor']}", headers=bearer(token)
        )
    ).json()
    assert [e["data"]["n"] for e in page["items"] + rest["items"]] == [1, 2, 3]
    assert [e["version"] for e in page["items"] + rest["items"]] == [1, 2, 3]
    later = (
        await client.get("/api/v1/events/order-1?from_version=3", headers=bearer(token))
    ).json()
    assert [e["version"] for e in later["items"]] == [3]


async def test_a_stale_expected_version_is_409(accounts: Accounts) -> None:
    token = await accounts.token(Role.service)
    await accounts.client.post("/events", headers=bearer(token), json=order_event(1))
    stale = await accounts.client.post(
        "/events", headers=bearer(token), json=order_event(2, expected_version=0)
    )
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("aggregate_type", ["workflow_run", "audit", "users", "system.jobs"])
async def test_server_owned_aggregates_cannot_be_forged(
    accounts: Accounts, aggregate_type: str
) -> None:
    token = await accounts.token(Role.admin)
    forged = await accounts.client.post(
        "/events",
        headers=bearer(token),
        json={**order_event(1), "aggregate_type": aggregate_type, "event_type": "Completed"},
    )
    assert forged.status_code == 403
    assert "written by the server only" in forged.json()["detail"]


async def test_the_server_sets_who_appended_whatever_the_client_claims(
    accounts: Accounts,
) -> None:
    token = await accounts.token(Role.operator)
    me = (await accounts.client.get("/api/v1/auth/me", headers=bearer(token))).json()
    await accounts.client.post(
        "/events",
        headers={**bearer(token), "X-Correlation-ID": "corr-7"},
        json=order_event(1, metadata={"actor": "user:someone-else", "channel": "web"}),
    )
    [event] = (await accounts.client.get("/api/v1/events/order-1", headers=bearer(token))).json()[
        "items"
    ]
    assert event["metadata"]["actor"] == f"user:{me['id']}"
    assert event["metadata"]["correlation_id"] == "corr-7"
    assert event["metadata"]["channel"] == "web"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**order_event(1), "aggregate_id": "stream"}, 422),
        ({**order_event(1), "aggregate_id": "has space"}, 422),
        ({**order_event(1), "aggregate_type": "Order"}, 422),
        ({**order_event(1), "data": [1, 2]}, 422),
        ({**order_event(1), "data": {"text": "nul\u0000"}}, 422),
        ({**order_event(1), "data": {"blob": "x" * 70_000}}, 413),  # over MAX_BODY_BYTES
        ({**order_event(1), "expected_version": 2**40}, 422),
        ({**order_event(1), "extra": True}, 422),
    ],
)
async def test_bad_events_are_refused_and_nothing_is_stored(
    accounts: Accounts, body: dict[str, object], status: int
) -> None:
    token = await accounts.token(Role.operator)
    response = await accounts.client.post("/events", headers=bearer(token), json=body)
    assert response.status_code == status, response.text
    stored = await accounts.client.get("/api/v1/events/order-1", headers=bearer(token))
    assert stored.status_code == 404


async def test_nan_in_the_body_is_refused(accounts: Accounts) -> None:
    token = await accounts.token(Role.operator)
    raw = b'{"aggregate_type": "order", "aggregate_id": "o", "event_type": "E", "data": {"x": NaN}}'
    response = await accounts.client.post(
        "/events", headers={**bearer(token), "content-type": "application/json"}, content=raw
    )
    assert response.status_code == 422


async def test_a_lone_surrogate_anywhere_in_the_event_is_refused(accounts: Accounts) -> None:
    token = await accounts.token(Role.operator)
    for data, metadata in (({"x": "\ud800"}, None), ({"\udfff": 1}, None), ({}, {"m": "\ud800"})):
        body = {"aggregate_type": "order", "aggregate_id": "surrogate", "event_type": "E",
                "data": data, "metadata": metadata}  # fmt: skip
        raw = json.dumps(body).encode()  # escaped as \ud800: valid JSON, invalid Unicode
        response = await accounts.client.post(
            "/events", headers={**bearer(token), "content-type": "application/json"}, content=raw
        )
        assert response.status_code == 422, response.text
        assert "lone surrogate" in response.json()["detail"]
    stored = await accounts.client.get("/api/v1/events/surrogate", headers=bearer(token))
    assert stored.status_code == 404


async def test_another_tenants_aggregate_is_not_found(accounts: Accounts) -> None:
    mine = await accounts.token(Role.operator)
    theirs = await accounts.token(Role.operator)
    await accounts.client.post("/events", headers=bearer(theirs), json=order_event(1))
    foreign = await accounts.client.get("/api/v1/events/order-1", headers=bearer(mine))
    unknown = await accounts.client.get("/api/v1/events/never-was", headers=bearer(mine))
    assert foreign.status_code == unknown.status_code == 404
    # Appending under the same id in my tenant starts my own aggregate at version 1.
    own = await accounts.client.post("/events", headers=bearer(mine), json=order_event(1))
    assert own.json()["version"] == 1


async def test_admin_reads_the_audit_trail_with_filters(accounts: Accounts) -> None:
    tenant = await accounts.tenant()
    admin = await accounts.token(Role.admin, tenant)
    operator = await accounts.token(Role.operator, tenant)
    operator_id = (await accounts.client.get("/api/v1/auth/me", headers=bearer(operator))).json()[
        "id"
    ]
    for n in range(3):
        await accounts.client.post("/events", headers=bearer(operator), json=order_event(n))
    client: httpx.AsyncClient = accounts.client
    logins = (
        await client.get("/api/v1/events?event_type=LoginSucceeded", headers=bearer(admin))
    ).json()["items"]
    assert len(logins) == 2  # the admin's and the operator's
    by_actor = (
        await client.get(f"/api/v1/events?actor=user:{operator_id}&aggregate_type=order",
                         headers=bearer(admin))
    ).json()  # fmt: skip
    assert [e["data"]["n"] for e in by_actor["items"]] == [0, 1, 2]
    page = (await client.get("/api/v1/events?limit=2", headers=bearer(admin))).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = await client.get("/api/v1/events", params={"since": future}, headers=bearer(admin))
    assert empty.json()["items"] == []
    backwards = await client.get(
        "/api/v1/events", params={"since": future, "until": "2020-01-01T00:00:00Z"},
        headers=bearer(admin),
    )  # fmt: skip
    assert backwards.status_code == 422
    assert (await client.get("/api/v1/events", headers=bearer(operator))).status_code == 403


async def test_event_data_has_its_own_size_limit(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path)  # the default 1 MiB body limit
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        response = await client.post(
            "/events", headers=bearer(token), json=order_event(1, data={"blob": "x" * 70_000})
        )
    assert response.status_code == 422
    assert "the limit is 65536" in response.json()["detail"]


async def test_concurrent_appenders_get_one_winner_per_version(accounts: Accounts) -> None:
    token = await accounts.token(Role.operator)
    client = accounts.client

    async def append(expected: int, n: int) -> int:
        response = await client.post(
            "/events", headers=bearer(token), json=order_event(n, expected_version=expected)
        )
        return response.status_code

    for version in range(3):
        statuses = await asyncio.gather(*(append(version, n) for n in range(5)))
        assert sorted(statuses) == [201, 409, 409, 409, 409], (version, statuses)
    stored = (await client.get("/api/v1/events/order-1", headers=bearer(token))).json()["items"]
    assert [e["version"] for e in stored] == [1, 2, 3]  # no gaps


async def test_a_stream_resumed_beyond_any_position_is_422(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    headers = {
        "Authorization": f"Bearer {await accounts.token(Role.viewer)}",
        "Last-Event-ID": str(2**63),  # 19 digits, one past the largest position
    }
    response = await client.get("/api/v1/events/stream", headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
