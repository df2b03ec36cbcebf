"""An in-process app on the test's database, with a small router that embedding apps could add."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from workflow_engine import create_app, load_settings
from workflow_engine.auth.accounts import create_tenant, create_user
from workflow_engine.auth.passwords import HashParameters, Passwords
from workflow_engine.auth.permissions import Role
from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.db import Database
from workflow_engine.events.upcasting import Upcasters
from workflow_engine.observability.logging import configure_logging


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(ge=1)


embedder_router = APIRouter(prefix="/api/v1/embedder")


@embedder_router.post("/orders", status_code=201)
async def create_order(order: Order) -> Order:
    return order


@embedder_router.get("/crash")
async def crash() -> None:
    raise RuntimeError("secret internal detail")


TEST_JWT_SECRET = "integration-tests-secret-of-at-least-32-bytes"
# argon2 at its cheapest: tests exercise the logic, not the cost (pitfall 11 in
# docs/architecture.md).
CHEAP_HASHING = {
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "PASSWORD_HASH_PARALLELISM": "1",
}
# Tests make hundreds of requests from one address in a second; the rate-limit tests set
# their own limits.
UNLIMITED = {
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "1000000",
    "RATE_LIMIT_TENANT_BURST": "100000",
    "RATE_LIMIT_ENDPOINTS": "{}",
}


def build_app(
    database_url: str,
    data_dir: Path,
    upcasters: Upcasters | None = None,
    workflows: Sequence[dict[str, Any]] = (),
    **env: str,
) -> FastAPI:
    settings, _ = load_settings(
        {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "info",
            "JWT_SECRET": TEST_JWT_SECRET,
            **CHEAP_HASHING,
            **UNLIMITED,
            **env,
        }
    )
    configure_logging(settings.log_level, "json")
    app = create_app(settings, upcasters=upcasters, workflows=workflows)
    app.include_router(embedder_router)
    return app


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and a client that calls it in process."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> FastAPI:
    return build_app(database_url, tmp_path, MAX_BODY_BYTES="2048")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as http:
        yield http


@dataclass
class Accounts:
    """Creates tenants and users in the app's database, and logs them in."""

    app: FastAPI
    client: httpx.AsyncClient
    password: str = "correct horse battery staple"

    @property
    def db(self) -> Database:
        return self.app.state.context.service("database", DatabaseService).database

    async def tenant(self) -> str:
        name = f"tenant-{uuid.uuid4().hex[:8]}"
        await create_tenant(self.db, name)
        return name

    async def user(self, role: Role, tenant: str | None = None) -> str:
        tenant = tenant or await self.tenant()
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        passwords = Passwords(HashParameters(time_cost=1, memory_kib=1024, parallelism=1))
        await create_user(
            self.db, passwords, tenant_name=tenant, email=email, password=self.password, role=role
        )
        return email

    async def login(self, email: str) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": self.password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def token(self, role: Role, tenant: str | None = None) -> str:
        return str((await self.login(await self.user(role, tenant)))["token"])


@pytest.fixture
def accounts(app: FastAPI, client: httpx.AsyncClient) -> Accounts:
    return Accounts(app, client)


# --- workflow runs through the API ---------------------------------------------------------


async def trigger_run(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: Any = None, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/workflows/trigger", headers=headers,
        json={"workflow_name": name, "data": data or {}, **body},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    return dict(response.json())


async def finished_run(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str, timeout: float = 15
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status = await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)
            body = dict(status.json())
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            await asyncio.sleep(0.05)


async def run_events(
    client: httpx.AsyncClient, headers: dict[str, str], run_id: str
) -> list[dict[str, Any]]:
    """The run's events, oldest first (its aggregate's first 200)."""
    page = await client.get(f"/api/v1/events/{run_id}", headers=headers, params={"limit": 200})
    return list(page.json()["items"])


def steps_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in status["steps"]}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """The samples of a `/metrics` answer. Metrics are per process and tests share one, so
    assertions are about the change between two scrapes."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
