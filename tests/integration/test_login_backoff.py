"""The login backoff, driven with short configured durations (milliseconds, not minutes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.conftest import Accounts, build_app, scrape, value
from workflow_engine.auth.permissions import Role

BASE = 0.2  # seconds: the first wait
FAST = {
    "LOGIN_BACKOFF_AFTER": "3",
    "LOGIN_BACKOFF_BASE_SECONDS": str(BASE),
    "LOGIN_BACKOFF_MAX_SECONDS": str(BASE * 4),
    "LOGIN_ACCOUNT_FAILURE_LIMIT": "50",
    "LOGIN_ACCOUNT_WINDOW_SECONDS": "60",
    "LOGIN_ACCOUNT_LOCK_SECONDS": "30",
}


@pytest.fixture
async def throttled(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[FastAPI]:
    overrides = getattr(request, "param", {})
    app = build_app(database_url, tmp_path, **{**FAST, **overrides})
    async with app.router.lifespan_context(app):
        yield app


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_backoff_doubles_per_pair_and_a_success_resets_it(throttled: FastAPI) -> None:
    async with client_from(throttled, "10.0.0.1") as attacker:
        email = await Accounts(throttled, attacker).user(Role.viewer)
        password = Accounts.password
        before = scrape((await attacker.get("/metrics")).text)
        for _ in range(3):
            assert (await _login(attacker, email, "wrong")).status_code == 401
        blocked = await _login(attacker, email, password)  # even the right password waits
        assert blocked.status_code == 429
        after = scrape((await attacker.get("/metrics")).text)
        for outcome, count in (("failed", 3), ("throttled", 1), ("succeeded", 0)):
            moved = value(after, "auth_logins_total", outcome=outcome) - value(
                before, "auth_logins_total", outcome=outcome
            )
            assert moved == count, outcome
        # The login backoff is not the request rate limiter: its 429s are counted apart.
        assert value(after, "rate_limit_rejected_total") == value(
            before, "rate_limit_rejected_total"
        )
        assert blocked.headers["retry-after"] == "1"  # rounded up to whole seconds
        first_wait = blocked.json()["retry_after"]
        assert 0 < first_wait <= BASE

        await asyncio.sleep(first_wait + 0.02)
        assert (await _login(attacker, email, "wrong")).status_code == 401
        second_wait = (await _login(attacker, email, "wrong")).json()["retry_after"]
        assert BASE < second_wait <= 2 * BASE  # doubled

        await asyncio.sleep(second_wait + 0.02)
        assert (await _login(attacker, email, "wrong")).status_code == 401
        third_wait = (await _login(attacker, email, "wrong")).json()["retry_after"]
        assert 2 * BASE < third_wait <= 4 * BASE  # doubled again, and capped at the maximum

        await asyncio.sleep(third_wait + 0.02)
        assert (await _login(attacker, email, password)).status_code == 200
        # The success reset the pair: failing again starts from one.
        assert (await _login(attacker, email, "wrong")).status_code == 401
        assert (await _login(attacker, email, "wrong")).status_code == 401


@pytest.mark.parametrize("throttled", [{"LOGIN_ACCOUNT_FAILURE_LIMIT": "6"}], indirect=True)
async def test_other_addresses_are_unaffected_until_the_account_limit(
    throttled: FastAPI,
) -> None:
    password = Accounts.password
    async with (
        client_from(throttled, "10.0.0.1") as first,
        client_from(throttled, "10.0.0.2") as second,
        client_from(throttled, "10.0.0.3") as bystander,
    ):
        email = await Accounts(throttled, first).user(Role.viewer)
        for _ in range(3):
            await _login(first, email, "wrong")
        assert (await _login(first, email, password)).status_code == 429
        assert (await _login(bystander, email, password)).status_code == 200
        for _ in range(3):  # 3 + 3 = 6 failures on the account: its limit
            assert (await _login(second, email, "wrong")).status_code == 401
        locked = await _login(bystander, email, password)
        assert locked.status_code == 429
        assert locked.json()["retry_after"] > 25  # the account-wide lock, not the pair's


async def test_unknown_emails_are_throttled_like_real_ones(throttled: FastAPI) -> None:
    async with client_from(throttled, "10.0.0.9") as client:
        for _ in range(3):
            assert (await _login(client, "nobody@example.com", "x")).status_code == 401
        blocked = await _login(client, "nobody@example.com", "x")
        assert blocked.status_code == 429
        assert blocked.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "throttled",
    [
        {
            "LOGIN_BACKOFF_BASE_SECONDS": "0.001",
            "LOGIN_BACKOFF_MAX_SECONDS": "0.002",
            "LOGIN_ACCOUNT_FAILURE_LIMIT": "1000",
        }
    ],
    indirect=True,
)
async def test_the_backoff_keeps_counting_long_after_the_cap(throttled: FastAPI) -> None:
    async with client_from(throttled, "10.0.0.7") as client:
        email = await Accounts(throttled, client).user(Role.viewer)
        statuses = []
        for _ in range(70):
            statuses.append((await _login(client, email, "wrong")).status_code)
            await asyncio.sleep(0.003)  # past the capped wait
        assert set(statuses) <= {401, 429}
        assert statuses.count(401) >= 60


@pytest.mark.parametrize(
    "throttled",
    [{"LOGIN_BACKOFF_BASE_SECONDS": "30", "LOGIN_BACKOFF_MAX_SECONDS": "60"}],
    indirect=True,
)
async def test_parallel_attempts_cannot_slip_past_the_threshold(throttled: FastAPI) -> None:
    async with client_from(throttled, "10.0.0.8") as client:
        email = await Accounts(throttled, client).user(Role.viewer)
        responses = await asyncio.gather(*(_login(client, email, "wrong") for _ in range(30)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == 3  # LOGIN_BACKOFF_AFTER: each attempt is counted first
    assert statuses.count(429) == 27
