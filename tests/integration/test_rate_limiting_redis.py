"""Redis-backed limits: the same answers as in memory, and fail-open when Redis goes away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.integration.conftest import build_app, running
from workflow_engine.ratelimit.gcra import Bucket, Limit
from workflow_engine.ratelimit.storage import RedisStorage


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


# A bucket of 100 refilling one token a minute: nothing refills while a test runs, so the
# counts below are exact.
SLOW_HUNDRED = {"RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": "100"}


async def script_calls(url: str) -> int:
    import redis.asyncio as redis

    async with redis.Redis.from_url(url) as client:
        stats = await client.info("commandstats")
    # Those that ran: the first call of a new script fails (NOSCRIPT) and is sent again.
    counts = [stats.get(f"cmdstat_{name}", {}) for name in ("evalsha", "eval")]
    return sum(int(c.get("calls", 0)) - int(c.get("failed_calls", 0)) for c in counts)


async def test_a_busy_client_costs_redis_one_call_per_lease_with_exact_headers(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    app = build_app(database_url, tmp_path, RATE_LIMIT_STORAGE_URL=redis_server.url, **SLOW_HUNDRED)
    async with running(app) as client:
        calls_before = await script_calls(redis_server.url)
        responses = [await client.get("/api/v1/uptime") for _ in range(104)]
        calls = await script_calls(redis_server.url) - calls_before
    assert [r.status_code for r in responses] == [200] * 100 + [429] * 4
    # One process sees every token it spends: its headers count down as without leases.
    assert [int(r.headers["ratelimit-remaining"]) for r in responses[:100]] == list(
        range(99, -1, -1)
    )
    assert all(r.headers["ratelimit-limit"] == "100" for r in responses)
    refused = responses[100]
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 55 <= int(refused.headers["retry-after"]) <= 60  # one token a minute
    # Leases grow with the demand (1, 2, 4, 8), but are at most a tenth of what is left: the
    # last twenty tokens are asked for one at a time, as are the refusals. A bucket this small
    # saves half the calls; a busy one with room, nearly all (docs/benchmarks.md).
    assert calls <= 50


async def test_two_servers_on_one_redis_never_admit_more_than_the_bucket(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"RATE_LIMIT_STORAGE_URL": redis_server.url, **SLOW_HUNDRED}
    first = build_app(database_url, tmp_path / "first", **env)
    second = build_app(database_url, tmp_path / "second", **env)
    async with running(first) as one, running(second) as other:
        responses = []
        for _ in range(10):  # waves of concurrent requests, like clients of a busy service
            wave = [client.get("/api/v1/uptime") for _ in range(10) for client in (one, other)]
            responses += await asyncio.gather(*wave)
    passed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    # One bucket of 100 for this client across both servers; what a server still holds in a
    # lease when the bucket runs dry is at most a tenth of what was left when it was leased.
    assert 80 <= len(passed) <= 100
    assert len(passed) + len(refused) == 200
    assert all(0 <= int(r.headers["ratelimit-remaining"]) <= 99 for r in passed)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert all(r.headers["ratelimit-remaining"] == "0" for r in refused)


async def test_after_redis_goes_away_fail_closed_serves_only_leased_tokens(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    app = build_app(
        database_url, tmp_path, RATE_LIMIT_STORAGE_URL=redis_server.url,
        RATE_LIMIT_FAIL_OPEN="false", **SLOW_HUNDRED,
    )  # fmt: skip
    async with running(app) as client:
        assert [(await client.get("/api/v1/uptime")).status_code for _ in range(20)] == [200] * 20
        redis_server.stop()
        during = [(await client.get("/api/v1/uptime")).status_code for _ in range(30)]
    # Tokens already counted in Redis and held by this server are still spent; then 503.
    served = during.index(503)
    assert during[served:] == [503] * (30 - served)
    assert served <= 10  # at most a tenth of the bucket was leased


async def test_requests_arriving_together_share_one_redis_call_decided_in_order(
    redis_server: RedisServer,
) -> None:
    storage = RedisStorage(redis_server.url)
    alice = [Bucket("p:alice", Limit(per_minute=60, burst=10))]
    try:
        calls_before = await script_calls(redis_server.url)
        decisions = await asyncio.gather(*(storage.acquire(alice) for _ in range(30)))
        calls = await script_calls(redis_server.url) - calls_before
    finally:
        await storage.close()
    assert calls == 1
    # The answers of thirty calls, one after another: the burst, counting down, then waits.
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 20
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert all(0.9 < d.retry_after <= 1.0 for d in decisions[10:])


async def test_a_tenant_ceiling_holds_across_processes_serving_its_principals_from_leases(
    redis_server: RedisServer,
) -> None:
    # Two processes, each serving one busy principal with room to spare, draw from one tenant
    # ceiling of 100 refilling a token a minute.
    ceiling = Bucket("t:acme", Limit(per_minute=1, burst=100))
    roomy = Limit(per_minute=60_000, burst=10_000)
    first, second = RedisStorage(redis_server.url), RedisStorage(redis_server.url)
    try:
        decisions = []
        for _ in range(10):
            decisions += await asyncio.gather(
                *(first.acquire([Bucket("p:alice", roomy), ceiling]) for _ in range(15)),
                *(second.acquire([Bucket("p:bob", roomy), ceiling]) for _ in range(15)),
            )
    finally:
        await first.close()
        await second.close()
    admitted = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert 80 <= len(admitted) <= 100
    assert all(d.limit == 100 for d in refused)  # refused by the ceiling, named in the headers
    assert all(d.retry_after > 50 for d in refused)
