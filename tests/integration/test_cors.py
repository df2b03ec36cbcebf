"""CORS: closed by default; CORS_ORIGINS opens it to exactly the listed origins."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.conftest import build_app

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}


async def _preflight(app_env: dict[str, str], database_url: str, tmp_path: Path) -> httpx.Response:
    app = build_app(database_url, tmp_path, **app_env)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        return await http.options("/api/v1/uptime", headers=PREFLIGHT)


async def test_no_cors_headers_by_default(database_url: str, tmp_path: Path) -> None:
    response = await _preflight({}, database_url, tmp_path)
    assert "access-control-allow-origin" not in response.headers


async def test_listed_origin_is_allowed_and_others_are_not(
    database_url: str, tmp_path: Path
) -> None:
    env = {"CORS_ORIGINS": "https://app.example, https://admin.example"}
    allowed = await _preflight(env, database_url, tmp_path)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    env = {"CORS_ORIGINS": "https://admin.example"}
    refused = await _preflight(env, database_url, tmp_path / "other")
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == "CORS preflight refused: Disallowed CORS origin"
    assert "access-control-allow-origin" not in refused.headers


async def test_a_500_still_carries_cors_headers(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, CORS_ORIGINS="https://app.example")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.get(
            "/api/v1/embedder/crash", headers={"Origin": "https://app.example"}
        )
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == "https://app.example"
