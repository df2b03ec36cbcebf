"""Two server processes sharing Redis enforce one combined limit."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def test_two_processes_share_one_limit_through_redis(
    server_factory: type[Server], redis_server: RedisServer
) -> None:
    limits = {
        "RATE_LIMIT_STORAGE_URL": redis_server.url,
        "RATE_LIMIT_PER_MINUTE": "60",
        "RATE_LIMIT_BURST": "10",
    }
    first = server_factory(env=limits).start()
    second = server_factory(env={**limits, "DATA_DIR": str(first.cwd / "data-2")}).start()
    statuses = [
        httpx.get(f"{server.url}/api/v1/uptime").status_code
        for _ in range(15)
        for server in (first, second)
    ]
    # One bucket for this client address across both processes: 10 (plus what refills while
    # the 30 requests are sent), not 10 per process.
    assert 10 <= statuses.count(200) <= 12
    assert statuses.count(429) >= 18
    assert first.stop() == 0
    assert second.stop() == 0


async def _hammer(urls: list[str], waves: int, per_wave: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=10) as client:
        responses: list[httpx.Response] = []
        for _ in range(waves):
            wave = [client.get(f"{url}/api/v1/uptime") for _ in range(per_wave) for url in urls]
            responses += await asyncio.gather(*wave)
        return responses


def test_two_busy_processes_never_admit_more_than_the_shared_bucket(
    server_factory: type[Server], redis_server: RedisServer
) -> None:
    # 200 tokens refilling one a minute: nothing refills during the test. Each process leases
    # tokens in advance (docs/configuration.md, "Rate limits"); together they may admit no more.
    limits = {
        "RATE_LIMIT_STORAGE_URL": redis_server.url,
        "RATE_LIMIT_PER_MINUTE": "1",
        "RATE_LIMIT_BURST": "200",
    }
    first = server_factory(env=limits).start()
    second = server_factory(env={**limits, "DATA_DIR": str(first.cwd / "data-2")}).start()
    responses = asyncio.run(_hammer([first.url, second.url], waves=15, per_wave=20))
    passed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(passed) + len(refused) == 600
    # At most the bucket; at worst short by what each process still held in a lease when the
    # bucket ran dry (a tenth of what was left when it was leased).
    assert 160 <= len(passed) <= 200
    assert all(0 <= int(r.headers["ratelimit-remaining"]) < 200 for r in passed)
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json"
        assert 1 <= int(response.headers["retry-after"]) <= 60  # one token a minute
        assert response.headers["ratelimit-remaining"] == "0"
    assert first.stop() == 0
    assert second.stop() == 0
