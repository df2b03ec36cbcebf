"""The security suite's world: one app per module and database, two tenants with one object of
every kind each, and tokens for every role of both.

Attack tests only read the world or act as the other tenant, so one world serves a whole
module; a test that changes something makes its own objects.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Message

from tests.integration.conftest import (
    CHEAP_HASHING,
    TEST_JWT_SECRET,
    UNLIMITED,
    Accounts,
    finished_run,
    running,
    trigger_run,
)
from workflow_engine import create_app, load_settings
from workflow_engine.api.security import Authorise
from workflow_engine.auth.permissions import Permission, Role
from workflow_engine.config import to_async_url
from workflow_engine.db.migrate import upgrade
from workflow_engine.ui import routes as ui_routes

# The dashboard's paths (`ui/routes.py`), each answering GET and HEAD.
UI_PATHS = (ui_routes.ROOT, *ui_routes.PAGES, ui_routes.STATIC)
# Path values that name something every caller may read, for the public paths above.
PUBLIC_SAMPLES = {
    "/swagger-ui/{asset}": {"asset": "swagger-ui.css"},
    "/ui/static/{asset}": {"asset": "icon.svg"},
    "/ui/runs/{run_id}": {"run_id": "0b9c7a52-6a8e-4f0e-9d2e-4c1f3b5a7e61"},
    "/ui/templates/{name}": {"name": "customer_support"},
}

# Operations anyone may call: the test of function-level authorisation fails for an
# operation that declares no permission and is not listed here.
PUBLIC_OPERATIONS = frozenset(
    {
        ("GET", "/health"),
        ("HEAD", "/health"),
        ("GET", "/health/detailed"),
        ("HEAD", "/health/detailed"),
        ("GET", "/api/v1/uptime"),
        ("GET", "/metrics"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/swagger-ui"),
        ("GET", "/swagger-ui/"),
        ("GET", "/swagger-ui/{asset}"),
        ("HEAD", "/swagger-ui/{asset}"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        # The dashboard's shell and files: the same bytes for everyone, no data (docs/ui.md).
        *((method, path) for method in ("GET", "HEAD") for path in UI_PATHS),
    }
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    permission: Permission | None

    def url(self, values: dict[str, str]) -> str:
        return self.path.format(**values)

    @property
    def parameters(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def operations(app: FastAPI) -> list[Operation]:
    """Every operation of the app's route table, with the permission it declares."""
    found = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        permissions = [
            node.call.permission for node in _dependants(route) if isinstance(node.call, Authorise)
        ]
        for method in sorted(route.methods or ()):
            found.append(Operation(method, route.path, permissions[0] if permissions else None))
    return found


def _dependants(route: APIRoute) -> list[Any]:
    pending, seen = [route.dependant], []
    while pending:
        node = pending.pop()
        seen.append(node)
        pending.extend(node.dependencies)
    return seen


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ORDER = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}


@dataclass
class Tenant:
    """A tenant with a token for each role, an API key, and one object of every kind."""

    name: str
    tokens: dict[Role, str]
    api_key: str
    ids: dict[str, str] = field(default_factory=dict)

    def headers(self, role: Role = Role.admin) -> dict[str, str]:
        return bearer(self.tokens[role])


async def make_tenant(accounts: Accounts, client: httpx.AsyncClient) -> Tenant:
    name = await accounts.tenant()
    tokens = {role: await accounts.token(role, name) for role in Role}
    admin = bearer(tokens[Role.admin])
    key = await client.post(
        "/api/v1/auth/api-keys", headers=admin, json={"name": "probe", "role": "service"}
    )
    assert key.status_code == 201, key.text
    tenant = Tenant(name, tokens, key.json()["key"])
    run = await trigger_run(client, admin, "order_summary", ORDER)
    await finished_run(client, admin, run["workflow_id"])
    user = await client.post(
        "/api/v1/users",
        headers=admin,
        json={"email": f"target-{uuid.uuid4().hex[:8]}@example.com", "role": "viewer",
              "password": "a long unusual passphrase"},
    )  # fmt: skip
    assert user.status_code == 201, user.text
    schedule = await client.post(
        "/api/v1/schedules",
        headers=admin,
        json={"name": "nightly", "workflow_name": "order_summary", "data": ORDER,
              "cron": "0 3 * * *", "paused": True},
    )  # fmt: skip
    assert schedule.status_code == 201, schedule.text
    service = await client.post(
        "/api/v1/registry/register",
        headers=admin,
        json={"service_name": "inventory", "service_url": "http://127.0.0.1:9/",
              "ttl_seconds": 3600},
    )  # fmt: skip
    assert service.status_code == 201, service.text
    aggregate = f"order-{uuid.uuid4().hex[:8]}"
    event = await client.post(
        "/events",
        headers=admin,
        json={"aggregate_type": "order", "aggregate_id": aggregate, "event_type": "OrderPlaced",
              "data": {"total": "1.00"}},
    )  # fmt: skip
    assert event.status_code == 201, event.text
    tenant.ids = {
        "workflow_id": run["workflow_id"],
        "aggregate_id": aggregate,
        "user_id": user.json()["id"],
        "key_id": key.json()["id"],
        "schedule_id": schedule.json()["id"],
        "service_id": service.json()["id"],
    }
    return tenant


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for the module: a new SQLite file, or the session's PostgreSQL
    database (tenants there are new for each module, so modules do not see each other)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = f"sqlite:///{tmp_path_factory.mktemp('security-db') / 'test.db'}"
    upgrade(to_async_url(url))
    return url


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security-data")


def build_app(
    database_url: str,
    data_dir: Path,
    workflows: Sequence[dict[str, Any]] = (),
    **env: str | None,
) -> FastAPI:
    """The app as a deployment runs it: the route table is the server's own, with no routes of
    an embedding application (whose security would be its own). A setting given as None is
    left unset."""
    given = {"DATABASE_URL": database_url, "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning",
             "JWT_SECRET": TEST_JWT_SECRET, "MAX_BODY_BYTES": "65536", **CHEAP_HASHING,
             # A throttled login stays throttled for the rest of its test, however slow.
             "LOGIN_BACKOFF_BASE_SECONDS": "60",
             **UNLIMITED, **env}  # fmt: skip
    settings, _ = load_settings({k: v for k, v in given.items() if v is not None})
    return create_app(settings, workflows=workflows)


@pytest.fixture(scope="module")
def app(backend_url: str, data_dir: Path) -> FastAPI:
    return build_app(backend_url, data_dir)


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as http:
        yield http


@pytest.fixture(scope="module")
def accounts(app: FastAPI, client: httpx.AsyncClient) -> Accounts:
    return Accounts(app, client)


@pytest.fixture(scope="module")
async def alice(accounts: Accounts, client: httpx.AsyncClient) -> Tenant:
    """The victim: tenant A."""
    return await make_tenant(accounts, client)


@pytest.fixture(scope="module")
async def mallory(accounts: Accounts, client: httpx.AsyncClient) -> Tenant:
    """The attacker: tenant B, with every role of its own."""
    return await make_tenant(accounts, client)


@dataclass
class RawExchange:
    """One request sent to the app as raw ASGI messages: header bytes no client library
    would send (CR, LF), and answers that never end (event streams), held open until closed."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytearray
    hang_up: asyncio.Event
    task: asyncio.Task[None]

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    async def close(self) -> None:
        self.hang_up.set()
        await asyncio.wait_for(self.task, 10)


async def raw_request(
    app: FastAPI,
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    body: bytes = b"",
) -> RawExchange:
    """Sends the request and returns once the answer has started (its body may go on)."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = loop.create_future()
    received = bytearray()
    hang_up = asyncio.Event()
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result((message["status"], list(message.get("headers", []))))
        elif message["type"] == "http.response.body":
            received.extend(message.get("body", b""))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    task = loop.create_task(app(scope, receive, send))
    waits: set[asyncio.Future[Any]] = {task, started}
    done, _ = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done and not started.done():
        task.result()  # raises what the app raised
    status, answer_headers = await asyncio.wait_for(started, 10)
    return RawExchange(status, answer_headers, received, hang_up, task)
