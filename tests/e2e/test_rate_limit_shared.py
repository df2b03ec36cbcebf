"""Two server processes sharing Redis enforce one combined limit."""

from __future__ import annotations

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
