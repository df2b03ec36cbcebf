"""Health endpoints, uptime statistics, the OpenAPI document and the offline Swagger UI."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from openapi_spec_validator import validate

from tests.integration.conftest import build_app, running
from workflow_engine.bootstrap.core_services import DatabaseService


async def test_health_is_cheap_and_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert re.match(r"^\d+\.\d+\.\d+", body["version"])
    assert body["uptime_seconds"] >= 0


async def test_detailed_health_lists_every_service(
    client: httpx.AsyncClient, database_url: str
) -> None:
    response = await client.get("/health/detailed")
    assert response.status_code == 200, response.text
    body = response.json()
    services = {s["name"]: s for s in body["services"]}
    # The registry reports every tenant's services; on PostgreSQL the database outlives each
    # test, and other tests leave unhealthy services behind: it is judged on its own.
    registry = services.pop("registry")
    assert registry["required"] is False
    assert registry["status"] in ("ok", "degraded")
    assert body["status"] == registry["status"]
    assert set(services) == {
        "data_dir",
        "database",
        "migrations",
        "events",
        "auth",
        "rate_limiter",
        "workflows",
        "event_sealer",
        "schedules",
        "worker",
        "demo_services",
        "mcp_server",
    }
    assert all(s["status"] == "ok" for s in services.values())
    assert services["database"]["required"] is True
    assert services["data_dir"]["data"]["free_bytes"] > 0
    on_postgres = database_url.startswith("postgresql")
    assert services["database"]["data"]["row_level_security"] is on_postgres
    assert body["failing"] == ([] if registry["status"] == "ok" else ["registry"])


async def test_uptime_counts_requests_and_latency(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get("/health")
    await client.get("/nowhere")
    body = (await client.get("/api/v1/uptime")).json()
    assert body["requests_served"] >= 4
    assert body["errors"] == 0
    assert body["latency_ms"]["p50"] > 0
    assert body["latency_ms"]["p95"] >= body["latency_ms"]["p50"]
    assert body["uptime"].endswith(("second", "seconds"))


async def test_openapi_is_valid_3_1_with_problem_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path in ("/health", "/health/detailed", "/api/v1/uptime"):
        operation = spec["paths"][path]["get"]
        assert "example" in str(spec["components"]["schemas"]) or operation
        error = operation["responses"]["500"]["content"]["application/problem+json"]
        assert error["schema"] == {"$ref": "#/components/schemas/Problem"}
    embedder = spec["paths"]["/api/v1/embedder/orders"]["post"]["responses"]
    for status in ("400", "413", "415", "422"):
        assert "application/problem+json" in embedder[status]["content"], status
    assert spec["paths"]["/health/detailed"]["get"]["responses"]["503"]
    # What any operation may answer is documented too: a rate limit, an outage, an unknown id.
    status = spec["paths"]["/api/v1/workflows/{workflow_id}/status"]["get"]["responses"]
    for code in ("404", "429", "503"):
        assert "application/problem+json" in status[code]["content"], code
    assert "409" in spec["paths"]["/api/v1/workflows/{workflow_id}/cancel"]["post"]["responses"]
    health = spec["paths"]["/health/detailed"]["get"]["responses"]["503"]
    assert "application/json" in health["content"]  # its own document, not replaced


async def test_swagger_ui_is_served_with_every_asset_local(client: httpx.AsyncClient) -> None:
    page = await client.get("/swagger-ui/")
    assert page.status_code == 200
    html = page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    references += re.findall(r"url: '([^']+)'", html)
    assert references, html
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not served by us"
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
    assert "/api/v1/openapi.json" in references
    assert "http://" not in html
    assert "https://" not in html.replace("https://swagger.io", "")


async def test_unknown_docs_asset_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/swagger-ui/../../etc/passwd")
    assert response.status_code == 404
    response = await client.get("/swagger-ui/index.j2")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_saturated_pool_is_degraded_not_down(database_url: str, tmp_path: Path) -> None:
    app = build_app(database_url, tmp_path, DB_MAX_CONNECTIONS="2")
    async with running(app) as client:
        db = app.state.context.service("database", DatabaseService).database
        async with db.engine.connect() as _first, db.engine.connect() as _second:
            response = await client.get("/health/detailed")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    database = {s["name"]: s for s in body["services"]}["database"]
    assert database["detail"] == "all 2 connections are in use"
