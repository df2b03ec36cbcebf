"""API4, unrestricted resource consumption: what one client can make the server hold or do.

Bodies are capped (413, before they are read), JSON nesting cannot take the parser down, one
credential holds a bounded number of live streams (429 past the cap), expressions cannot build
huge values from a client's input, lists are paged within a limit, and one tenant's flood of
runs neither runs past `MAX_RUNNING_PER_TENANT` nor holds another tenant's runs back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import own_database
from tests.integration.conftest import Accounts, finished_run, running, trigger_run
from tests.security.conftest import (
    RawExchange,
    Tenant,
    bearer,
    build_app,
    raw_request,
)
from workflow_engine.api.streams import MAX_STREAMS_PER_PRINCIPAL
from workflow_engine.auth.permissions import Role

LIMIT = 65536  # MAX_BODY_BYTES of the suite's app


async def test_a_declared_huge_body_is_413_before_it_is_read(app: FastAPI, alice: Tenant) -> None:
    for headers in ([], [(b"authorization", f"Bearer {alice.tokens[Role.admin]}".encode())]):
        answer = await raw_request(
            app, "POST", "/api/v1/workflows/trigger",
            headers=[*headers, (b"content-type", b"application/json"),
                     (b"content-length", str(10 * 1024 * 1024 * 1024).encode())],
        )  # fmt: skip
        await answer.close()
        assert answer.status == 413, answer.body


async def test_a_streamed_huge_body_is_413(client: httpx.AsyncClient, alice: Tenant) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"workflow_name": "order_summary", "data": {"customer": "'
        for _ in range(LIMIT // 1024 + 2):
            yield b"x" * 1024
        yield b'"}}'

    response = await client.post(
        "/api/v1/workflows/trigger",
        headers={**alice.headers(), "Content-Type": "application/json"},
        content=_async(chunks()),
    )
    assert response.status_code == 413, response.text


async def _async(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize("depth", [1000, 20000])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
async def test_deep_json_nesting_is_a_client_error(
    client: httpx.AsyncClient, alice: Tenant, depth: int, opener: str
) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if len(nested) > LIMIT:
        nested = nested[: LIMIT - 10]  # a malformed prefix: still must not be a 500
    body = '{"workflow_name": "order_summary", "data": {"customer": "A", "items": ' + nested + "}}"
    for path in ("/api/v1/workflows/trigger", "/events", "/api/v1/schedules"):
        response = await client.post(
            path, headers={**alice.headers(), "Content-Type": "application/json"}, content=body
        )
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


async def test_page_sizes_are_capped(client: httpx.AsyncClient, alice: Tenant) -> None:
    for path in ("/api/v1/workflows", "/api/v1/users", "/api/v1/events", "/api/v1/aggregates",
                 "/api/v1/auth/api-keys", "/api/v1/schedules", "/api/v1/registry/services",
                 f"/api/v1/events/{alice.ids['aggregate_id']}",
                 f"/api/v1/workflows/{alice.ids['workflow_id']}/logs"):  # fmt: skip
        for limit in (10**6, 2**63, -1, 0):
            response = await client.get(path, headers=alice.headers(), params={"limit": limit})
            assert response.status_code == 422, (path, limit, response.status_code)


# --- live streams ------------------------------------------------------------------------------


async def _open(app: FastAPI, target: str, token: str) -> RawExchange:
    path, _, query = target.partition("?")
    return await raw_request(app, "GET", path, query=query.encode(),
                             headers=[(b"authorization", f"Bearer {token}".encode())])  # fmt: skip


async def test_one_credential_holds_a_bounded_number_of_streams(
    app: FastAPI, accounts: Accounts, alice: Tenant
) -> None:
    token = await accounts.token(Role.viewer, alice.name)
    run_logs = f"/api/v1/workflows/{alice.ids['workflow_id']}/logs?follow=true"
    opened: list[RawExchange] = []
    try:
        for _ in range(MAX_STREAMS_PER_PRINCIPAL):
            opened.append(await _open(app, "/api/v1/events/stream", token))
        assert [answer.status for answer in opened] == [200] * MAX_STREAMS_PER_PRINCIPAL
        for path in ("/api/v1/events/stream", "/api/v1/events/stream?after=0"):
            refused = await _open(app, path, token)
            await refused.close()
            assert refused.status == 429, refused.body
            assert int(dict(refused.headers)[b"retry-after"]) >= 1
            assert b"streams are open" in refused.body
        # Another caller is not held back by this one's streams.
        other = await _open(app, "/api/v1/events/stream", alice.tokens[Role.viewer])
        opened.append(other)
        assert other.status == 200
        # A stream closed gives its place back.
        await opened.pop(0).close()
        async with asyncio.timeout(10):
            while (again := await _open(app, "/api/v1/events/stream", token)).status == 429:
                await again.close()
                await asyncio.sleep(0.02)
        opened.append(again)
        assert again.status == 200
        # The log stream of a finished run ends by itself, and counts while it lasts.
        logs = await _open(app, run_logs, token)
        await logs.close()
        assert logs.status == 429
    finally:
        for answer in opened:
            await answer.close()
    after = await _open(app, "/api/v1/events/stream", token)
    await after.close()
    assert after.status == 200


# --- expressions and run caps, on an app with workflows of the test's own ---------------------

ECHO = {
    "name": "echo",
    "steps": [{"id": "shape", "uses": "transform", "with": {
        "repeated": "{{ input.text * input.times }}",
        "joined": "{{ input.text ~ input.text }}",
        "numbers": "{{ range(input.times) | list | length }}",
        "power": "{{ input.times ** input.times }}",
    }}],
    "output": "{{ steps.shape.output }}",
}  # fmt: skip
ADMITTED = {"running", "waiting"}
NAP = {
    "name": "nap",
    "steps": [{"id": "nap", "uses": "sleep", "with": {"seconds": 30}}],
    "output": {"slept": True},
}


@pytest.fixture(scope="module")
async def capped(
    backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Accounts]]:
    """An app whose tenants may have two runs under way."""
    directory: Path = tmp_path_factory.mktemp("capped")
    async with own_database(backend_url, directory) as url:
        app = build_app(url, directory, workflows=[ECHO, NAP], MAX_RUNNING_PER_TENANT="2")
        async with running(app) as http:
            yield http, Accounts(app, http)


@pytest.mark.parametrize(
    ("text", "times"),
    [("x", 10**9), ("xy" * 1000, 10**6), ("x", 10**5)],
)
async def test_expressions_do_not_build_huge_values_from_input(
    capped: tuple[httpx.AsyncClient, Accounts], text: str, times: int
) -> None:
    client, accounts = capped
    headers = bearer(await accounts.token(Role.operator))
    run = await trigger_run(client, headers, "echo", {"text": text, "times": times})
    status = await finished_run(client, headers, run["workflow_id"])
    assert status["status"] == "failed"
    error = str(status["steps"][0]["error"])
    assert "limit" in error.lower() or "too" in error.lower(), error
    assert len((await client.get(f"/api/v1/workflows/{run['workflow_id']}/results",
                                 headers=headers)).content) < 100_000  # fmt: skip


async def test_a_tenants_flood_of_runs_is_admitted_a_few_at_a_time(
    capped: tuple[httpx.AsyncClient, Accounts],
) -> None:
    client, accounts = capped
    flooder = bearer(await accounts.token(Role.operator))
    runs = [await trigger_run(client, flooder, "nap") for _ in range(6)]
    statuses: list[str] = []
    try:
        async with asyncio.timeout(10):
            while statuses.count("queued") != 4 or set(statuses) - {"queued"} - ADMITTED:
                statuses = [
                    (await client.get(f"/api/v1/workflows/{run['workflow_id']}/status",
                                      headers=flooder)).json()["status"]
                    for run in runs
                ]  # fmt: skip
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"the runs did not settle as two admitted and four queued: {statuses}")
    # Two admitted (starting, or asleep: `waiting`), the rest queued: not refused, not started.
    assert len([s for s in statuses if s in ADMITTED]) == 2, statuses
    # Another tenant's run is not queued behind the flood.
    other = bearer(await accounts.token(Role.operator))
    quick = await trigger_run(client, other, "echo", {"text": "a", "times": 2})
    assert (await finished_run(client, other, quick["workflow_id"]))["status"] == "completed"
    for run in runs:
        await client.post(f"/api/v1/workflows/{run['workflow_id']}/cancel", headers=flooder)
