"""The app under fuzzing, its principals and the real things their requests may name.

One app per database for the fuzz module, reached through schemathesis's ASGI client; its
lifespan is started once on that client's event loop (see `Hosted`), so every request and the
embedded worker share one loop. Everything the fuzzer needs — users of each role, an API
key, runs, schedules, registered services — is made through the API itself, after the first
admin is created by the project's own bootstrap, as `serve` does on an empty database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from schemathesis.python import asgi
from starlette.types import Receive, Scope, Send

from tests.conftest import create_database, drop_database, require_postgres
from workflow_engine import create_app, load_settings
from workflow_engine.auth.accounts import bootstrap_admin
from workflow_engine.auth.passwords import HashParameters, Passwords
from workflow_engine.auth.permissions import Permission, Role, allows
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade
from workflow_engine.observability.logging import configure_logging

# CI runs a small, pinned slice; `make fuzz` raises the count (FUZZ_MAX_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "8"))
SEED = int(os.environ.get("FUZZ_SEED", "20261206"))

PASSWORD = "fuzzing is a long passphrase"
JWT_SECRET = "fuzz-tests-secret-of-at-least-32-bytes!"

SETTINGS = {
    "JWT_SECRET": JWT_SECRET,
    "JWT_EXPIRATION": "86400",
    "LOG_LEVEL": "error",
    # argon2 at its cheapest: every fuzzed login and user creation hashes a password.
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "PASSWORD_HASH_PARALLELISM": "1",
    # The rate limits and the login backoff off, as far as settings go: the fuzzer sends
    # thousands of requests from one address, and its failed logins would lock its own users.
    "RATE_LIMIT_PER_MINUTE": "100000000",
    "RATE_LIMIT_BURST": "100000000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "100000000",
    "RATE_LIMIT_TENANT_BURST": "100000000",
    "RATE_LIMIT_ENDPOINTS": "{}",
    "LOGIN_BACKOFF_AFTER": "1000",
    "LOGIN_ACCOUNT_FAILURE_LIMIT": "1000000000",
    # A trigger's `?wait` long-poll is bounded by this: generated waits above it are a 422.
    "TRIGGER_WAIT_MAX_SECONDS": "1",
    # Registered services are never probed during a run: the fuzzer registers arbitrary URLs.
    "REGISTRY_CHECK_INTERVAL_SECONDS": "3600",
}

# A run that waits (to be cancelled), one that fails at once (to be retried) and one that
# waits for approval (to be approved or rejected).
WORKFLOWS: list[dict[str, Any]] = [
    {"name": "fuzz_nap", "steps": [{"id": "nap", "uses": "sleep", "with": {"seconds": 86400}}]},
    {"name": "fuzz_approval", "steps": [
        {"id": "review", "uses": "approval", "with": {"proposal": {"text": "draft"}}},
    ]},
    {"name": "fuzz_fail", "steps": [
        {"id": "boom", "uses": "transform", "with": {"value": "{{ input.missing }}"}},
    ]},
]  # fmt: skip

ORDER = {"customer": "Ada Lovelace", "items": [{"name": "Manual", "amount": 12.5}]}


@dataclass(frozen=True)
class Principal:
    """Who a fuzzed request is sent as: a user's access token, or an API key."""

    name: str
    role: Role
    api_key: bool = False

    def may(self, permission: Permission | None) -> bool:
        return permission is None or allows(self.role, permission)


PRINCIPALS = [
    Principal("admin", Role.admin),
    Principal("operator", Role.operator),
    Principal("viewer", Role.viewer),
    Principal("service", Role.service),
    Principal("service-key", Role.service, api_key=True),
]


def build_app(database_url: str, data_dir: Path, *, serving: bool = True) -> FastAPI:
    """The app; `serving=False` for one that is only asked for its document (at collection,
    where the process's logging must stay as the other tests expect it)."""
    settings, _ = load_settings(
        {"DATABASE_URL": database_url, "DATA_DIR": str(data_dir), **SETTINGS}
    )
    if serving:
        configure_logging(settings.log_level, "json")
    return create_app(settings, workflows=WORKFLOWS)


@dataclass
class World:
    """The running app, a client on it, and the principals and resources made through it."""

    app: Hosted
    schema: Any
    client: requests.Session
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    completed_runs: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    # --- plain calls as the admin (setup and per-case preparation) ------------------------

    def call(
        self, method: str, path: str, *, as_: str = "admin", expect: int | None = None, **kw: Any
    ) -> requests.Response:
        headers = kw.pop("headers", None) or self.credentials.get(as_, {})
        response = self.client.request(method, path, headers=headers, timeout=30, **kw)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.text)
        return response

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._counter)}-{uuid.uuid4().hex[:6]}"

    def login(self, email: str) -> dict[str, Any]:
        body = {"email": email, "password": PASSWORD}
        return dict(self.call("POST", "/api/v1/auth/login", json=body, expect=200).json())

    def create_user(self, role: Role) -> tuple[str, str]:
        email = f"{self.unique(role.value)}@example.com"
        body = {"email": email, "role": role.value, "password": PASSWORD}
        user = self.call("POST", "/api/v1/users", json=body, expect=201).json()
        return email, str(user["id"])

    def trigger(self, name: str, data: dict[str, Any]) -> str:
        body = {"workflow_name": name, "data": data}
        run = self.call("POST", "/api/v1/workflows/trigger", json=body, expect=202).json()
        return str(run["workflow_id"])

    def wait_for(self, run_id: str, statuses: set[str]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.call("GET", f"/api/v1/workflows/{run_id}/status", expect=200).json()
            if status["status"] in statuses:
                return
            time.sleep(0.02)
        raise AssertionError(f"run {run_id} never reached {statuses}")

    # --- fresh things a case may consume --------------------------------------------------

    def waiting_run(self) -> str:
        run_id = self.trigger("fuzz_nap", {})
        self.wait_for(run_id, {"waiting"})
        return run_id

    def approval_run(self) -> str:
        """A run whose `review` step waits for approval (the only step: the run waits)."""
        run_id = self.trigger("fuzz_approval", {})
        self.wait_for(run_id, {"waiting"})
        return run_id

    def failed_run(self) -> str:
        run_id = self.trigger("fuzz_fail", {})
        self.wait_for(run_id, {"failed"})
        return run_id

    def schedule(self, *, paused: bool = True) -> str:
        body = {
            "name": self.unique("fuzz-schedule"), "workflow_name": "order_summary",
            "data": ORDER, "cron": "0 3 * * *", "paused": paused,
        }  # fmt: skip
        return str(self.call("POST", "/api/v1/schedules", json=body, expect=201).json()["id"])

    def service(self) -> str:
        body = {
            "service_name": self.unique("fuzz-service"), "service_url": "http://127.0.0.1:9/",
            "ttl_seconds": 86400,
        }  # fmt: skip
        response = self.call("POST", "/api/v1/registry/register", json=body)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["id"])

    def api_key(self) -> tuple[str, str]:
        body = {"name": self.unique("fuzz-key"), "role": "viewer"}
        key = self.call("POST", "/api/v1/auth/api-keys", json=body, expect=201).json()
        return str(key["id"]), str(key["key"])

    def session_of(self, principal: Principal) -> dict[str, str]:
        """A new session of the principal's user (for logout), or its usual credential."""
        if principal.api_key:
            return self.credentials[principal.name]
        email = self.emails[principal.name]
        return {"Authorization": f"Bearer {self.login(email)['token']}"}


class Hosted:
    """The app behind a lifespan of its own, which starts the app's lifespan once and keeps
    it until `close`: schemathesis's pytest plugin ends every ASGI lifespan after each test,
    and restarting the app's services for each of hundreds of tests would cost minutes."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._started: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        if self._started is None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started = self._loop.create_future()
            self._task = self._loop.create_task(self._run(self._started, self._stop))
        await asyncio.shield(self._started)

    async def _run(self, started: asyncio.Future[None], stop: asyncio.Event) -> None:
        try:
            async with self.app.router.lifespan_context(self.app):
                started.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            self._done.set_exception(exc)
            raise
        self._done.set_result(None)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._done.result(timeout=60)


def _bootstrap(database_url: str) -> None:
    async def go() -> None:
        db = Database(to_async_url(database_url), pool_size=1, pool_timeout=10)
        try:
            passwords = Passwords(HashParameters(time_cost=1, memory_kib=1024, parallelism=1))
            await bootstrap_admin(db, passwords, email="admin@example.com", password=PASSWORD)
        finally:
            await db.dispose()

    asyncio.run(go())


def make_world(database_url: str, data_dir: Path) -> World:
    upgrade(to_async_url(database_url))
    _bootstrap(database_url)
    app = Hosted(build_app(database_url, data_dir))
    # Streams are cut after a few events (and, per call, after a deadline): see test_api.py.
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    client = asgi.get_client(app, max_stream_events=3)
    world = World(app=app, schema=schema, client=client)

    world.emails["admin"] = "admin@example.com"
    world.credentials["admin"] = {
        "Authorization": f"Bearer {world.login('admin@example.com')['token']}"
    }
    for principal in PRINCIPALS[1:]:
        if principal.api_key:
            body = {"name": world.unique(principal.name), "role": principal.role.value}
            key = world.call("POST", "/api/v1/auth/api-keys", json=body, expect=201).json()
            world.credentials[principal.name] = {"X-API-Key": key["key"]}
            continue
        email = world.create_user(principal.role)[0]
        world.emails[principal.name] = email
        world.credentials[principal.name] = {
            "Authorization": f"Bearer {world.login(email)['token']}"
        }

    # Users the fuzzer may change, never the principals themselves; and a user whose failed
    # logins lock no principal out.
    world.emails["login"] = world.create_user(Role.viewer)[0]
    world.victims = [world.create_user(Role.viewer)[1] for _ in range(3)]
    world.completed_runs = [world.trigger("order_summary", ORDER) for _ in range(3)]
    for run_id in world.completed_runs:
        world.wait_for(run_id, {"completed"})
    world.schedules = [world.schedule() for _ in range(3)]
    world.services = [world.service() for _ in range(3)]
    return world


@pytest.fixture(scope="module")
def postgres_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """On a database of its own: the bootstrap needs an empty one, and the session's shared
    PostgreSQL database holds other tests' tenants."""
    url = asyncio.run(create_database(require_postgres()))
    try:
        world = make_world(url, tmp_path_factory.mktemp("fuzz-postgres"))
        yield world
        world.app.close()
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("fuzz-sqlite")
    world = make_world(f"sqlite:///{data_dir / 'fuzz.db'}", data_dir)
    yield world
    world.app.close()
