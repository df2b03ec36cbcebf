"""What every answer carries and what the logs say of it: headers once each, a response's own
security headers kept, one access line per request at the configured level."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import build_app, running


def _logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == event]


async def test_each_edge_header_is_sent_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Correlation-ID": "once-1"})
    for name in ("x-correlation-id", "x-content-type-options", "content-security-policy"):
        assert response.headers.get_list(name) == [response.headers[name]], name
    assert response.headers["x-correlation-id"] == "once-1"
    assert response.headers["cache-control"] == "no-store"


async def test_a_request_without_an_id_is_given_a_fresh_uuid(client: httpx.AsyncClient) -> None:
    ids = [(await client.get("/health")).headers["x-correlation-id"] for _ in range(20)]
    assert len(set(ids)) == len(ids)
    for given in ids:
        assert str(uuid.UUID(given)) == given
        assert uuid.UUID(given).version == 4


async def test_a_response_keeps_the_security_headers_it_sets_itself(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/swagger-ui/")
    assert page.status_code == 200
    [policy] = page.headers.get_list("content-security-policy")
    assert "script-src 'self'" in policy  # the docs page's own, not the API's default-src 'none'
    assert page.headers["x-frame-options"] == "DENY"  # the ones it left unset are added
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.headers.get_list("cache-control") == ["public, max-age=300"]


async def test_hsts_is_sent_in_production_only(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    assert "strict-transport-security" not in (await client.get("/health")).headers
    app = build_app(database_url, tmp_path, ENVIRONMENT="production", JWT_SECRET="p" * 40)
    async with running(app) as production:
        response = await production.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_one_access_line_per_request_names_the_route_template(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    response = await client.get(f"/api/v1/workflows/{uuid.uuid4()}/status")
    assert response.status_code == 401
    [line] = _logged(caplog, "request")
    assert line["route"] == "/api/v1/workflows/{workflow_id}/status"
    assert line["method"] == "GET"
    assert line["status"] == 401
    assert line["duration_ms"] >= 0
    assert line["correlation_id"] == response.headers["x-correlation-id"]
    assert line["level"] == "info"


async def test_below_the_log_level_no_access_line_is_written_but_errors_are(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(database_url, tmp_path, LOG_LEVEL="warning")
    async with running(app) as client:
        caplog.clear()
        assert (await client.get("/health")).status_code == 200
        crashed = await client.get("/api/v1/embedder/crash")
    assert crashed.status_code == 500
    assert _logged(caplog, "request") == []
    [error] = _logged(caplog, "unhandled error")
    assert error["correlation_id"] == crashed.headers["x-correlation-id"]
    assert error["level"] == "error"
