"""An in-process app on the test's database, with a small router that embedding apps could add."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from workflow_engine import create_app, load_settings
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


def build_app(database_url: str, data_dir: Path, **env: str) -> FastAPI:
    settings, _ = load_settings(
        {"DATABASE_URL": database_url, "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning", **env}
    )
    configure_logging(settings.log_level, "json")
    app = create_app(settings)
    app.include_router(embedder_router)
    return app


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(database_url, tmp_path, MAX_BODY_BYTES="2048")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http
