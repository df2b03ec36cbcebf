"""Rate limits as a client sees them: headers, 429s, per principal, endpoint and tenant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role

LIMITS = {
    "RATE_LIMIT_PER_MINUTE": "60",
    "RATE_LIMIT_BURST": "10",
    "RATE_LIMIT_TENANT_PER_MINUTE": "6000",
    "RATE_LIMIT_TENANT_BURST": "1000",
    "RATE_LIMIT_ENDPOINTS": json.dumps(
        {"GET /api/v1/users": {"requests_per_minute": 60, "burst_size": 3}}
    ),
}


@pytest.fixture
async def limited(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = build_app(database_url, tmp_path, **{**LIMITS, **getattr(request, "param", {})})
    async with running(app) as client:
        yield app, client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _burst(client: httpx.AsyncClient, url: str, n: int, **kw: object) -> list[httpx.Response]:
    return [await client.get(url, **kw) for _ in range(n)]  # type: ignore[arg-type]


async def test_thirty_rapid_requests_pass_the_burst_and_no_more(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited
    accounts = Accounts(app, client)
    alice = await accounts.token(Role.viewer)
    bob = await accounts.token(Role.viewer)
    responses = await _burst(client, "/api/v1/auth/me", 30, headers=bearer(alice))
    passed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert 10 <= len(passed) <= 11  # the burst, give or take the refill during it
    assert len(passed) + len(refused) == 30
    assert passed[0].headers["ratelimit-limit"] == "10"
    assert passed[0].headers["ratelimit-remaining"] == "9"
    assert int(passed[0].headers["ratelimit-reset"]) >= 1
    first_refusal = refused[0]
    assert first_refusal.headers["content-type"] == "application/problem+json"
    assert first_refusal.headers["retry-after"] == "1"
    assert 0 < first_refusal.json()["retry_after"] <= 1.0
    assert first_refusal.headers["ratelimit-remaining"] == "0"
    # Another principal has its own bucket.
    assert (await client.get("/api/v1/auth/me", headers=bearer(bob))).status_code == 200


async def test_an_endpoint_override_applies_to_that_endpoint_only(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited
    admin = await Accounts(app, client).token(Role.admin)
    users = await _burst(client, "/api/v1/users", 5, headers=bearer(admin))
    assert [r.status_code for r in users] == [200, 200, 200, 429, 429]
    assert users[0].headers["ratelimit-limit"] == "3"
    me = await client.get("/api/v1/auth/me", headers=bearer(admin))
    assert me.status_code == 200
    assert me.headers["ratelimit-limit"] == "10"


@pytest.mark.parametrize(
    "limited", [{"RATE_LIMIT_TENANT_PER_MINUTE": "60", "RATE_LIMIT_TENANT_BURST": "6"}],
    indirect=True,
)  # fmt: skip
async def test_the_tenant_ceiling_caps_the_sum_of_its_principals(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited
    accounts = Accounts(app, client)
    tenant = await accounts.tenant()
    tokens = [await accounts.token(Role.viewer, tenant) for _ in range(3)]
    outsider = await accounts.token(Role.viewer)
    statuses = [
        (await client.get("/api/v1/auth/me", headers=bearer(t))).status_code
        for _ in range(4)
        for t in tokens
    ]
    assert 6 <= statuses.count(200) <= 7  # the tenant's burst, whichever principal asked
    assert (await client.get("/api/v1/auth/me", headers=bearer(outsider))).status_code == 200


async def test_anonymous_clients_are_limited_by_address_and_health_is_exempt(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = limited
    uptime = await _burst(client, "/api/v1/uptime", 15)
    assert 10 <= sum(r.status_code == 200 for r in uptime) <= 11
    health = await _burst(client, "/health", 30)
    assert all(r.status_code == 200 for r in health)
    assert "ratelimit-limit" not in health[0].headers
    docs = await client.get("/api/v1/openapi.json")
    assert docs.status_code == 200


async def test_invalid_credentials_are_limited_by_address_not_by_claimed_identity(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = limited
    responses = await _burst(client, "/api/v1/auth/me", 15, headers=bearer("forged"))
    statuses = [r.status_code for r in responses]
    assert statuses[:10] == [401] * 10
    assert 429 in statuses[10:]
