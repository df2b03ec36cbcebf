"""The service registry over the API, with its health checker probing real local HTTP servers
(short intervals), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.db.tables import service_checks

INTERVAL = 0.2
SEED_REGISTRATION = {
    "service_name": "my-service",
    "service_url": "http://localhost:3000",
    "health_check_url": "http://localhost:3000/health",
    "metadata": {"version": "1.0.0"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeService:
    """A real HTTP service on a local port whose health the test controls."""

    port: int
    healthy: bool = True
    probes: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def health(self, _request: Request) -> Response:
        self.probes.append(asyncio.get_running_loop().time())
        if self.healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "down"}, status_code=503)

    async def to_private(self, _request: Request) -> Response:
        return RedirectResponse("http://10.20.30.40/health", status_code=302)

    async def elsewhere(self, _request: Request) -> Response:
        return RedirectResponse(f"{self.url}/health", status_code=301)

    async def endless(self, _request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0)

        return StreamingResponse(chunks())


async def _serve(app: Starlette, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            return server, task
        await asyncio.sleep(0.01)
    raise AssertionError("the fake service did not start")


@pytest.fixture
async def service() -> AsyncIterator[FakeService]:
    fake = FakeService(_free_port())
    app = Starlette(routes=[
        Route("/health", fake.health), Route("/to-private", fake.to_private),
        Route("/elsewhere", fake.elsewhere), Route("/endless", fake.endless),
    ])  # fmt: skip
    server, task = await _serve(app, fake.port)
    yield fake
    server.should_exit = True
    await task


@dataclass
class Registry:
    client: httpx.AsyncClient
    writer: dict[str, str]
    reader: dict[str, str]
    accounts: Accounts

    async def register(self, **body: Any) -> httpx.Response:
        return await self.client.post("/api/v1/registry/register", json=body, headers=self.writer)

    async def service(self, service_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/registry/services/{service_id}", headers=self.reader
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def until(
        self, service_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = await self.service(service_id)
                if check(found):
                    return found
                await asyncio.sleep(0.05)


def _settings(**extra: str) -> dict[str, str]:
    return {
        "REGISTRY_CHECK_INTERVAL_SECONDS": str(INTERVAL),
        "REGISTRY_CHECK_TIMEOUT_SECONDS": "1",
        "REGISTRY_EXPIRED_GRACE_SECONDS": "0.5",
        "DEMO_SERVICES": "false",
        **extra,
    }


@pytest.fixture
async def registry(database_url: str, tmp_path: Path) -> AsyncIterator[Registry]:
    app = build_app(database_url, tmp_path, **_settings())
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        writer = {"Authorization": f"Bearer {await accounts.token(Role.service, tenant)}"}
        reader = {"Authorization": f"Bearer {await accounts.token(Role.viewer, tenant)}"}
        yield Registry(client, writer, reader, accounts)


async def test_the_seeds_registration_works_with_a_token(registry: Registry) -> None:
    response = await registry.register(**SEED_REGISTRATION)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/registry/services/{body['id']}"
    assert body["service_name"] == "my-service"
    assert body["metadata"] == {"version": "1.0.0"}
    # Probed once at registration: decided at once, healthy or not (nothing on :3000 here
    # unless the machine runs something there).
    assert body["status"] in ("healthy", "unhealthy")
    assert body["last_check"] is not None
    listed = await registry.client.get("/api/v1/registry/services", headers=registry.reader)
    assert [s["id"] for s in listed.json()["items"]] == [body["id"]]


async def test_registering_again_updates_instead_of_duplicating(
    registry: Registry, service: FakeService
) -> None:
    first = await registry.register(service_name="search", service_url=service.url,
                                    health_check_url=f"{service.url}/health",
                                    metadata={"version": "1"}, tags=["blue"])  # fmt: skip
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "healthy"
    again = await registry.register(service_name="search", service_url=service.url,
                                    health_check_url=f"{service.url}/health",
                                    metadata={"version": "2"}, tags=["green"])  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["metadata"] == {"version": "2"}
    listed = await registry.client.get("/api/v1/registry/services", headers=registry.reader)
    assert len(listed.json()["items"]) == 1
    by_tag = await registry.client.get("/api/v1/registry/services?tag=green",
                                       headers=registry.reader)  # fmt: skip
    assert [s["id"] for s in by_tag.json()["items"]] == [first.json()["id"]]
    old_tag = await registry.client.get("/api/v1/registry/services?tag=blue",
                                        headers=registry.reader)  # fmt: skip
    assert old_tag.json()["items"] == []


async def test_a_failing_service_turns_unhealthy_within_two_intervals_and_recovers(
    registry: Registry, service: FakeService
) -> None:
    registered = await registry.register(service_name="flaky", service_url=service.url,
                                         health_check_url=f"{service.url}/health")  # fmt: skip
    service_id = registered.json()["id"]
    await registry.until(service_id, lambda s: s["status"] == "healthy")
    service.healthy = False
    loop = asyncio.get_running_loop()
    failing_since = loop.time()
    down = await registry.until(service_id, lambda s: s["status"] == "unhealthy")
    # Two failing checks (the threshold), each due an interval after the last, plus the
    # checker's tick: well within three intervals, never at the first failure.
    assert down["consecutive_failures"] == 2
    assert down["last_check"]["error"] == "answered 503"
    failures = [t for t in service.probes if t >= failing_since]
    assert len(failures) == 2
    assert failures[-1] - failing_since < 3 * INTERVAL + 0.5
    service.healthy = True
    back = await registry.until(service_id, lambda s: s["status"] == "healthy")
    assert back["consecutive_successes"] == 2
    assert back["last_check"]["error"] is None

    health = (await registry.client.get("/api/v1/registry/health", headers=registry.reader)).json()
    assert health["totals"]["healthy"] == 1
    assert health["services"][0]["service_name"] == "flaky"

    changes = await registry.client.get(f"/api/v1/events/{service_id}", headers=registry.reader)
    assert changes.status_code == 200, changes.text
    statuses = [(e["data"]["from"], e["data"]["to"]) for e in changes.json()["items"]
                if e["event_type"] == "ServiceStatusChanged"]  # fmt: skip
    assert statuses == [("unknown", "healthy"), ("healthy", "unhealthy"), ("unhealthy", "healthy")]


async def test_a_service_that_stops_heartbeating_expires_and_is_removed(
    registry: Registry,
) -> None:
    registered = await registry.register(
        service_name="worker-7", service_url="http://127.0.0.1:9/", ttl_seconds=1
    )
    assert registered.status_code == 201, registered.text
    service_id = registered.json()["id"]
    assert registered.json()["status"] == "healthy"  # registering is its first heartbeat
    for _ in range(4):  # heartbeats keep it alive past its TTL
        await asyncio.sleep(0.4)
        beat = await registry.client.post(f"/api/v1/registry/services/{service_id}/heartbeat",
                                          headers=registry.writer)  # fmt: skip
        assert beat.status_code == 200, beat.text
        assert beat.json()["status"] == "healthy"
    expired = await registry.until(service_id, lambda s: s["status"] == "expired", timeout=5)
    assert expired["last_heartbeat_at"] is not None
    async with asyncio.timeout(5):
        while True:
            gone = await registry.client.get(f"/api/v1/registry/services/{service_id}",
                                             headers=registry.reader)  # fmt: skip
            if gone.status_code == 404:
                break
            await asyncio.sleep(0.05)
    assert gone.headers["content-type"] == "application/problem+json"
    history = await registry.client.get(f"/api/v1/events/{service_id}", headers=registry.reader)
    kinds = [e["event_type"] for e in history.json()["items"]]
    assert kinds[0] == "ServiceRegistered"
    assert kinds[-2:] == ["ServiceStatusChanged", "ServiceRemoved"]


async def test_an_expired_service_revives_with_a_heartbeat(registry: Registry) -> None:
    registered = await registry.register(service_name="batch", service_url="http://127.0.0.1:9/",
                                         ttl_seconds=1)  # fmt: skip
    service_id = registered.json()["id"]
    await registry.until(service_id, lambda s: s["status"] == "expired", timeout=5)
    beat = await registry.client.post(f"/api/v1/registry/services/{service_id}/heartbeat",
                                      headers=registry.writer)  # fmt: skip
    assert beat.json()["status"] == "healthy"


REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "link-local or cloud metadata"),
    ("http://[::ffff:169.254.169.254]/", "link-local or cloud metadata"),
    ("http://100.100.100.200/", "link-local or cloud metadata"),
    ("file:///etc/passwd", "only http and https"),
    ("http://admin:hunter2@127.0.0.1:8080/", "credentials in the URL"),
    ("http://10.0.0.7/health", "private or loopback address"),
    ("http://no-such-host.invalid/", "cannot resolve"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_urls_aimed_inside_are_refused(registry: Registry, url: str, reason: str) -> None:
    for field_name in ("service_url", "health_check_url"):
        body = {"service_name": "sneaky", "service_url": "http://127.0.0.1:9/",
                "health_check_url": "http://127.0.0.1:9/", field_name: url}  # fmt: skip
        refused = await registry.register(**body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert reason in refused.json()["detail"]
        assert "hunter2" not in refused.text
        assert refused.json()["errors"][0]["loc"] == ["body", field_name]
    listed = await registry.client.get("/api/v1/registry/services", headers=registry.reader)
    assert listed.json()["items"] == []


async def test_a_name_resolving_to_loopback_is_refused_where_loopback_is_not_allowed(
    database_url: str, tmp_path: Path
) -> None:
    app = build_app(database_url, tmp_path, **_settings(REGISTRY_ALLOWED_NETWORKS="10.0.0.0/8"))
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.service)
        refused = await client.post(
            "/api/v1/registry/register", headers={"Authorization": f"Bearer {token}"},
            json={"service_name": "local", "service_url": "http://localhost:3000"},
        )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert "'localhost' is a private or loopback address" in refused.json()["detail"]
    assert "REGISTRY_ALLOWED_NETWORKS" in refused.json()["detail"]


async def test_a_health_url_that_redirects_is_refused(
    registry: Registry, service: FakeService
) -> None:
    to_private = await registry.register(service_name="r", service_url=service.url,
                                         health_check_url=f"{service.url}/to-private")  # fmt: skip
    assert to_private.status_code == 422, to_private.text
    detail = to_private.json()["detail"]
    assert "redirects to http://10.20.30.40/health, which is refused" in detail
    elsewhere = await registry.register(service_name="r", service_url=service.url,
                                        health_check_url=f"{service.url}/elsewhere")  # fmt: skip
    assert elsewhere.status_code == 422
    assert "redirects are not followed, register that URL" in elsewhere.json()["detail"]


async def test_bad_registrations_are_precise_422s(registry: Registry) -> None:
    cases: list[dict[str, Any]] = [
        {"service_name": "x"},  # no URL
        {"service_name": "x", "service_url": "http://127.0.0.1:9/"},  # no health URL, no TTL
        {"service_name": "", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 10},
        {"service_name": "x", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 0},
        {"service_name": "x", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 10,
         "metadata": {"v": "\u0000"}},
        {"service_name": "x", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 10,
         "metadata": {"blob": "x" * 20000}},
        {"service_name": "x", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 10,
         "unknown": 1},
    ]  # fmt: skip
    for body in cases:
        response = await registry.register(**body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    bad_id = await registry.client.get("/api/v1/registry/services/not-a-uuid",
                                       headers=registry.reader)  # fmt: skip
    assert bad_id.status_code == 422
    bad_status = await registry.client.get("/api/v1/registry/services?status=sleepy",
                                           headers=registry.reader)  # fmt: skip
    assert bad_status.status_code == 422
    forged = await registry.client.get("/api/v1/registry/services?cursor=eyJ4IjoxfQ",
                                       headers=registry.reader)  # fmt: skip
    assert forged.status_code == 422


async def test_roles_and_tenants(registry: Registry) -> None:
    made = await registry.register(service_name="mine", service_url="http://127.0.0.1:9/",
                                   ttl_seconds=60)  # fmt: skip
    service_id = made.json()["id"]
    reader_write = await registry.client.post(
        "/api/v1/registry/register", headers=registry.reader,
        json={"service_name": "v", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 60},
    )  # fmt: skip
    assert reader_write.status_code == 403
    operator = {"Authorization": f"Bearer {await registry.accounts.token(Role.operator)}"}
    assert (await registry.client.delete(f"/api/v1/registry/deregister/{service_id}",
                                         headers=operator)).status_code == 403  # fmt: skip
    anonymous = await registry.client.get("/api/v1/registry/services")
    assert anonymous.status_code == 401

    other = {"Authorization": f"Bearer {await registry.accounts.token(Role.admin)}"}
    assert (await registry.client.get(f"/api/v1/registry/services/{service_id}",
                                      headers=other)).status_code == 404  # fmt: skip
    assert (await registry.client.delete(f"/api/v1/registry/deregister/{service_id}",
                                         headers=other)).status_code == 404  # fmt: skip
    assert (await registry.client.post(f"/api/v1/registry/services/{service_id}/heartbeat",
                                       headers=other)).status_code == 404  # fmt: skip
    theirs = await registry.client.get("/api/v1/registry/services", headers=other)
    assert theirs.json()["items"] == []

    gone = await registry.client.delete(f"/api/v1/registry/deregister/{service_id}",
                                        headers=registry.writer)  # fmt: skip
    assert gone.status_code == 204
    assert (await registry.client.get(f"/api/v1/registry/services/{service_id}",
                                      headers=registry.reader)).status_code == 404  # fmt: skip


async def test_lists_filter_and_paginate(registry: Registry) -> None:
    for name in ("alpha", "beta", "beta", "gamma"):
        port = _free_port()
        made = await registry.register(service_name=name, service_url=f"http://127.0.0.1:{port}/",
                                       ttl_seconds=60, tags=[f"team-{name}"])  # fmt: skip
        assert made.status_code == 201, made.text
    seen: list[str] = []
    url = "/api/v1/registry/services?limit=3"
    while url:
        page = (await registry.client.get(url, headers=registry.reader)).json()
        seen += [s["service_name"] for s in page["items"]]
        cursor = page["next_cursor"]
        url = f"/api/v1/registry/services?limit=3&cursor={cursor}" if cursor else ""
    assert seen == ["alpha", "beta", "beta", "gamma"]
    betas = await registry.client.get("/api/v1/registry/services?name=beta",
                                      headers=registry.reader)  # fmt: skip
    assert [s["service_name"] for s in betas.json()["items"]] == ["beta", "beta"]
    healthy = await registry.client.get("/api/v1/registry/services?status=healthy",
                                        headers=registry.reader)  # fmt: skip
    assert len(healthy.json()["items"]) == 4
    unhealthy = await registry.client.get("/api/v1/registry/services?status=unhealthy",
                                          headers=registry.reader)  # fmt: skip
    assert unhealthy.json()["items"] == []


async def test_detailed_health_shows_the_registry(registry: Registry, service: FakeService) -> None:
    await registry.register(service_name="flaky", service_url=service.url,
                            health_check_url=f"{service.url}/health")  # fmt: skip
    service.healthy = False
    async with asyncio.timeout(10):
        while True:
            body = (await registry.client.get("/health/detailed")).json()
            entry = {s["name"]: s for s in body["services"]}["registry"]
            if entry["status"] == "degraded":
                break
            await asyncio.sleep(0.05)
    assert entry["required"] is False
    assert entry["data"]["leader"] is True
    # Every tenant's services (on PostgreSQL the database outlives each test: at least ours).
    assert entry["data"]["services"]["unhealthy"] >= 1
    assert body["status"] == "degraded"  # an optional dependency: the server still serves


async def test_a_probe_reads_only_the_start_of_an_endless_answer(
    registry: Registry, service: FakeService
) -> None:
    registered = await registry.register(service_name="chatty", service_url=service.url,
                                         health_check_url=f"{service.url}/endless")  # fmt: skip
    assert registered.status_code == 201, registered.text
    # Passed: the probe stopped reading after its cap instead of waiting out its timeout.
    assert registered.json()["status"] == "healthy"
    assert registered.json()["last_check"]["error"] is None


async def test_concurrent_registrations_of_one_service_make_one(registry: Registry) -> None:
    body = {"service_name": "racer", "service_url": "http://127.0.0.1:9/", "ttl_seconds": 60}
    answers = await asyncio.gather(*(registry.register(**body) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = await registry.client.get("/api/v1/registry/services", headers=registry.reader)
    assert len(listed.json()["items"]) == 1


@pytest.mark.parametrize(
    "url",
    ["http://xn--a.example/", f"http://{'a' * 64}.example.com/", "http://a..example.com/",
     "http://127.0.0.1:99999/health"],
)  # fmt: skip
async def test_malformed_hosts_are_422_not_500(registry: Registry, url: str) -> None:
    for field_name in ("service_url", "health_check_url"):
        body = {"service_name": "odd", "service_url": "http://127.0.0.1:9/",
                "health_check_url": "http://127.0.0.1:9/", field_name: url}  # fmt: skip
        refused = await registry.register(**body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"


async def test_a_ttl_shorter_than_the_check_interval_is_refused(
    database_url: str, tmp_path: Path, service: FakeService
) -> None:
    app = build_app(database_url, tmp_path, **_settings(REGISTRY_CHECK_INTERVAL_SECONDS="30"))
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.service)
        refused = await client.post(
            "/api/v1/registry/register", headers={"Authorization": f"Bearer {token}"},
            json={"service_name": "s", "service_url": service.url, "ttl_seconds": 10,
                  "health_check_url": f"{service.url}/health"},
        )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["body", "ttl_seconds"]


# --- the check history --------------------------------------------------------------------------


async def _checks(
    client: httpx.AsyncClient, service_id: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/registry/services/{service_id}/checks", headers=headers, params=params
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _checks_until(
    client: httpx.AsyncClient,
    service_id: str,
    headers: dict[str, str],
    check: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        while True:
            found = await _checks(client, service_id, headers)
            if check(found):
                return found
            await asyncio.sleep(0.05)


async def test_the_check_history_keeps_the_newest_checks_newest_first(
    database_url: str, tmp_path: Path, service: FakeService
) -> None:
    app = build_app(database_url, tmp_path, **_settings(REGISTRY_CHECK_HISTORY="4"))
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        writer = {"Authorization": f"Bearer {await accounts.token(Role.service, tenant)}"}
        reader = {"Authorization": f"Bearer {await accounts.token(Role.viewer, tenant)}"}
        registered = await client.post(
            "/api/v1/registry/register", headers=writer,
            json={"service_name": "tracked", "service_url": service.url,
                  "health_check_url": f"{service.url}/health"},
        )  # fmt: skip
        assert registered.status_code == 201, registered.text
        service_id = registered.json()["id"]
        # The registration's own probe is the first check.
        first = (await _checks(client, service_id, reader))[-1]
        assert first["passed"] is True
        assert first["error"] is None
        assert first["latency_ms"] >= 0
        assert first["checked_at"] == registered.json()["last_check"]["at"]

        # The history grows with each check...
        grown = await _checks_until(client, service_id, reader, lambda found: len(found) >= 3)
        assert len(grown) <= 4
        # ...and keeps the newest four: four failures after at least three passes.
        service.healthy = False
        await _checks_until(
            client, service_id, reader,
            lambda found: len(found) == 4 and not any(check["passed"] for check in found),
        )  # fmt: skip
        capped = await _checks(client, service_id, reader)
        assert len(capped) == 4
        times = [datetime.fromisoformat(check["checked_at"]) for check in capped]
        assert times == sorted(times, reverse=True)
        assert len(set(times)) == 4
        assert capped[0]["passed"] is False
        assert capped[0]["error"] == "answered 503"
        assert capped[0]["status"] == "unhealthy"
        assert len(await _checks(client, service_id, reader, limit=2)) == 2
        for limit in (0, 501, "many"):
            refused = await client.get(f"/api/v1/registry/services/{service_id}/checks",
                                       headers=reader, params={"limit": limit})  # fmt: skip
            assert refused.status_code == 422, (limit, refused.text)


async def test_a_check_history_is_its_tenants_and_goes_with_its_service(
    registry: Registry, service: FakeService
) -> None:
    registered = await registry.register(service_name="private", service_url=service.url,
                                         health_check_url=f"{service.url}/health")  # fmt: skip
    service_id = registered.json()["id"]
    assert len(await _checks(registry.client, service_id, registry.reader)) >= 1
    url = f"/api/v1/registry/services/{service_id}/checks"
    other = {"Authorization": f"Bearer {await registry.accounts.token(Role.admin)}"}
    theirs = await registry.client.get(url, headers=other)
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == "application/problem+json"
    assert service_id not in str({k: v for k, v in theirs.json().items() if k != "instance"})
    unknown = await registry.client.get(
        f"/api/v1/registry/services/{uuid.uuid4()}/checks", headers=registry.reader
    )
    assert unknown.status_code == 404
    assert (await registry.client.get(url)).status_code == 401

    gone = await registry.client.delete(f"/api/v1/registry/deregister/{service_id}",
                                        headers=registry.writer)  # fmt: skip
    assert gone.status_code == 204
    assert (await registry.client.get(url, headers=registry.reader)).status_code == 404
    database = registry.accounts.db
    async with database.read() as conn:
        left = await conn.execute(
            select(func.count())
            .select_from(service_checks)
            .where(service_checks.c.service_id == uuid.UUID(service_id))
        )
        assert left.scalar_one() == 0
