"""`serve --workers 2`: whichever process answers `/metrics` reports both processes' counts."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def _uptime_requests(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "http_requests_total"
                    and sample.labels.get("route") == "/api/v1/uptime"):  # fmt: skip
                return sample.value
    return 0.0


def test_several_processes_report_one_sum(
    server_factory: type[Server], fresh_postgres_url: str, redis_server: RedisServer
) -> None:
    server = server_factory("serve", "--workers", "2", env={
        "DATABASE_URL": fresh_postgres_url, "RATE_LIMIT_STORAGE_URL": redis_server.url,
        "RATE_LIMIT_PER_MINUTE": "100000", "RATE_LIMIT_BURST": "1000",
    }).start()  # fmt: skip
    served = []
    for _ in range(40):  # new connections: the kernel spreads them over both processes
        with httpx.Client() as client:
            response = client.get(f"{server.url}/api/v1/uptime")
            assert response.status_code == 200
            served.append(response.json()["requests_served"])  # this process's own count
    assert max(served) < 40  # so both processes answered some
    # Each scrape lands on either process; every one reports all 40 requests.
    assert {_uptime_requests(server) for _ in range(10)} == {40.0}
    assert server.stop() == 0


def _gauge(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} is not in /metrics")


def test_open_streams_are_subscribers_not_requests_in_flight(
    server_factory: type[Server],
) -> None:
    admin = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
             "BOOTSTRAP_ADMIN_PASSWORD": "Metrics-Stream-Test-42"}  # fmt: skip
    server = server_factory(env=admin).start()
    token = httpx.post(f"{server.url}/api/v1/auth/login", timeout=10, json={
        "email": admin["BOOTSTRAP_ADMIN_EMAIL"], "password": admin["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{server.url}/api/v1/events/stream", headers=headers) as sse:
            assert sse.status_code == 200
            assert _gauge(server, "sse_subscribers") == 1
            assert _gauge(server, "http_requests_in_flight") == 1  # the scrape itself
        deadline = 50
        while _gauge(server, "sse_subscribers") != 0 and deadline:
            deadline -= 1  # the server notices the reader left at its next write or ping
            time.sleep(0.2)
    assert _gauge(server, "sse_subscribers") == 0
    assert _gauge(server, "http_requests_in_flight") == 1
    assert server.stop() == 0
