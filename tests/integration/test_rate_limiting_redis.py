"""Redis-backed limits: the same answers as in memory, and fail-open when Redis goes away."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.integration.conftest import build_app, running


async def test_redis_buckets_limit_like_memory_ones(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    app = build_app(
        database_url, tmp_path, RATE_LIMIT_STORAGE_URL=redis_server.url,
        RATE_LIMIT_PER_MINUTE="60", RATE_LIMIT_BURST="10",
    )  # fmt: skip
    async with running(app) as client:
        responses = [await client.get("/api/v1/uptime") for _ in range(15)]
    passed = [r for r in responses if r.status_code == 200]
    assert 10 <= len(passed) <= 11
    assert [r.headers["ratelimit-remaining"] for r in passed[:3]] == ["9", "8", "7"]
    refused = [r for r in responses if r.status_code == 429]
    assert refused[0].headers["retry-after"] == "1"


async def test_a_redis_outage_fails_open_with_one_warning(
    database_url: str,
    tmp_path: Path,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(
        database_url, tmp_path, RATE_LIMIT_STORAGE_URL=redis_server.url,
        RATE_LIMIT_PER_MINUTE="60", RATE_LIMIT_BURST="3",
    )  # fmt: skip
    async with running(app) as client:
        before = [await client.get("/api/v1/uptime") for _ in range(3)]
        assert all("ratelimit-limit" in r.headers for r in before)
        redis_server.stop()
        during = [await client.get("/api/v1/uptime") for _ in range(20)]
        assert [r.status_code for r in during] == [200] * 20  # served, unchecked
        detailed = (await client.get("/health/detailed")).json()
    warnings = [
        r.msg for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "rate-limit storage unreachable"
    ]  # fmt: skip
    assert len(warnings) == 1
    assert warnings[0]["fail_open"] is True
    limiter = {s["name"]: s for s in detailed["services"]}["rate_limiter"]
    assert limiter["status"] == "degraded"
    assert detailed["status"] == "degraded"  # optional trouble: still 200
    assert limiter["data"]["fail_open_count"] >= 20


async def test_fail_closed_refuses_with_503(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    app = build_app(
        database_url, tmp_path, RATE_LIMIT_STORAGE_URL=redis_server.url,
        RATE_LIMIT_FAIL_OPEN="false",
    )  # fmt: skip
    async with running(app) as client:
        redis_server.stop()
        response = await client.get("/api/v1/uptime")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert (await client.get("/health")).status_code == 200  # exempt, always answers
