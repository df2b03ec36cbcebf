"""Every client mistake gets a precise problem+json 4xx with the correlation id."""

from __future__ import annotations

import httpx
import pytest

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:workflow-engine:problem:{slug}"
    assert body["instance"] == response.request.url.path
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    return body


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embedder/orders",
        content=b'{"item": "tea", "quantity": ',
        headers={"content-type": "application/json"},
    )
    body = assert_problem(response, 400, "malformed-json")
    assert str(body["detail"]).startswith("The request body is not valid JSON")


async def test_wrong_field_types_are_422_with_each_field_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embedder/orders", json={"item": "", "quantity": "many", "password": "hunter2"}
    )
    body = assert_problem(response, 422, "validation-failed")
    locations = sorted(tuple(error["loc"]) for error in body["errors"])  # type: ignore[attr-defined]
    assert locations == [("body", "item"), ("body", "quantity")]
    assert "hunter2" not in response.text
    assert "many" not in response.text


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embedder/orders", content=b"item=tea", headers={"content-type": "text/plain"}
    )
    body = assert_problem(response, 415, "unsupported-media-type")
    assert "text/plain" in str(body["detail"])


async def test_declared_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embedder/orders", json={"item": "x" * 5000, "quantity": 1}
    )
    body = assert_problem(response, 413, "content-too-large")
    assert "2048 bytes" in str(body["detail"])


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    response = await client.post(
        "/api/v1/embedder/orders", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "content-too-large")


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")
    body = assert_problem(response, 404, "not-found")
    assert body["detail"] == "No route matches GET /api/v1/no-such-thing"


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD"


async def test_unexpected_error_is_a_500_problem_without_internals(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/api/v1/embedder/crash")
    body = assert_problem(response, 500, "internal-error")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "correlation id" in str(body["detail"])
    logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    [error] = [line for line in logged if line["event"] == "unhandled error"]
    assert "secret internal detail" in error["exception"]  # the traceback goes to the log
    assert error["correlation_id"] == body["correlation_id"]
    assert error["level"] == "error"


async def test_valid_request_passes_through_every_middleware(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/embedder/orders", json={"item": "tea", "quantity": 2})
    assert response.status_code == 201
    assert response.json() == {"item": "tea", "quantity": 2}


async def test_correlation_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/health", headers={"X-Correlation-ID": "req-42.a"})
    assert given.headers["x-correlation-id"] == "req-42.a"
    via_request_id = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert via_request_id.headers["x-correlation-id"] == "abc-123"
    hostile = await client.get("/health", headers={"X-Correlation-ID": "bad id\twith spaces"})
    assert hostile.headers["x-correlation-id"] != "bad id\twith spaces"
    assert len(hostile.headers["x-correlation-id"]) == 36


async def test_security_headers_are_set(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_undecodable_body_is_a_malformed_json_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embedder/orders",
        content=b'{"item": "\xff\xfe", "quantity": 1}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, "malformed-json")


async def test_head_is_answered_where_get_is(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/health/detailed", "/swagger-ui/swagger-ui.css"):
        response = await client.head(path)
        assert response.status_code == 200, path
