"""Injection: SQL through list filters and cursors, CR/LF through echoed headers, template code
through a run's input, and sandbox escapes in workflow expressions.

SQL payloads run on both databases; a payload either finds nothing (it is a value, compared as
one) or is refused as a 422, never a 500 and never another tenant's rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import own_database
from tests.integration.conftest import Accounts, finished_run, running, trigger_run
from tests.security.conftest import (
    ORDER,
    Tenant,
    bearer,
    build_app,
    raw_request,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.engine import expressions

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "%",
    "_",
    "%' OR tenant_id IS NOT NULL --",
    "\\",
    "') UNION SELECT password_hash FROM users --",
    "1; SELECT pg_sleep(5)",
    "$1",
    "*/ OR /*",
]
FILTERS = [
    ("/api/v1/schedules", "workflow_name"),
    ("/api/v1/registry/services", "name"),
    ("/api/v1/registry/services", "tag"),
    ("/api/v1/workflows", "workflow_name"),
    ("/api/v1/workflows", "status"),
    ("/api/v1/events", "event_type"),
    ("/api/v1/events", "aggregate_type"),
    ("/api/v1/events", "actor"),
    ("/api/v1/events", "since"),
    ("/api/v1/aggregates", "aggregate_type"),
]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_sql_in_list_filters_is_a_value(
    client: httpx.AsyncClient, alice: Tenant, mallory: Tenant, payload: str
) -> None:
    for path, name in FILTERS:
        response = await client.get(path, headers=mallory.headers(), params={name: payload})
        assert response.status_code in (200, 422), (path, name, response.text)
        if response.status_code == 200:
            assert response.json()["items"] == [], (path, name, payload)
        for value in alice.ids.values():
            assert value not in response.text
    # The tables are all still there.
    assert (await client.get("/api/v1/users", headers=alice.headers())).status_code == 200


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_sql_in_cursors_is_a_value(
    client: httpx.AsyncClient, alice: Tenant, mallory: Tenant, payload: str
) -> None:
    forged = [
        ("/api/v1/users", {"email": payload}),
        ("/api/v1/auth/api-keys", {"id": payload}),
        ("/api/v1/events", {"position": payload}),
        ("/api/v1/aggregates", {"id": payload}),
        ("/api/v1/schedules", {"name": payload, "id": payload}),
        ("/api/v1/registry/services", {"name": payload, "id": payload}),
        ("/api/v1/workflows", {"created_at": payload, "id": payload}),
        (f"/api/v1/events/{mallory.ids['aggregate_id']}", {"version": payload}),
    ]
    for path, key in forged:
        for cursor in (_cursor(key), payload, _cursor([payload]), _cursor({"email": 1e308})):
            response = await client.get(path, headers=mallory.headers(), params={"cursor": cursor})
            assert response.status_code in (200, 422), (path, cursor, response.text)
            for value in alice.ids.values():
                assert value not in response.text, (path, cursor)
    # Email order is the users cursor: a quote sorts like any character, and finds only
    # Mallory's own users after it.
    page = await client.get("/api/v1/users", headers=mallory.headers(),
                            params={"cursor": _cursor({"email": ""})})  # fmt: skip
    assert page.status_code == 200
    assert all(user["tenant_id"] != alice.ids.get("tenant") for user in page.json()["items"])


async def test_sql_in_path_ids_is_a_value(client: httpx.AsyncClient, mallory: Tenant) -> None:
    for payload in PAYLOADS:
        for path in ("/api/v1/events/{}", "/api/v1/workflows/templates/{}"):
            response = await client.get(path.format(payload), headers=mallory.headers())
            assert response.status_code in (404, 422), (path, payload, response.text)


# --- headers -----------------------------------------------------------------------------------

INJECTED = b"abc\r\nSet-Cookie: owned=1\r\nX-Injected: 1"


@pytest.mark.parametrize(
    "header", [b"x-correlation-id", b"x-request-id", b"idempotency-key", b"last-event-id"]
)
async def test_crlf_in_echoed_headers_is_never_echoed(
    app: FastAPI, alice: Tenant, header: bytes
) -> None:
    for value in (INJECTED, b"ok\nX-Injected: 1", b"ok\rX-Injected: 1", b"\x00\x7f" * 10):
        answer = await raw_request(
            app, "POST", "/api/v1/workflows/trigger",
            headers=[(b"authorization", f"Bearer {alice.tokens[Role.operator]}".encode()),
                     (b"content-type", b"application/json"), (header, value)],
            body=json.dumps({"workflow_name": "order_summary", "data": ORDER}).encode(),
        )  # fmt: skip
        await answer.close()
        assert answer.status in (202, 400, 422), answer.body
        for name, sent in answer.headers:
            assert not {b"\r", b"\n", b"\x00"} & {bytes([c]) for c in sent}, name
            assert name not in (b"set-cookie", b"x-injected")
        [correlation] = answer.header(b"x-correlation-id")
        assert value not in correlation


# --- templates and the sandbox -----------------------------------------------------------------

TEMPLATE_INPUTS = [
    "{{ 7*7 }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for x in range(10) %}x{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "${7*7}",
]


@pytest.mark.parametrize("text", TEMPLATE_INPUTS)
async def test_a_runs_input_is_never_evaluated(
    client: httpx.AsyncClient, alice: Tenant, text: str
) -> None:
    headers = alice.headers(Role.operator)
    run = await trigger_run(client, headers, "order_summary", {**ORDER, "customer": text})
    status = await finished_run(client, headers, run["workflow_id"])
    assert status["status"] == "completed"
    result = await client.get(f"/api/v1/workflows/{run['workflow_id']}/results", headers=headers)
    assert result.json()["output"]["summary"].startswith(f"{text}: 1 item(s)")


PROBE = {
    "name": "probe",
    "steps": [{"id": "look", "uses": "transform", "with": {
        "by_key": "{{ input.obj[input.attr] }}",
    }}],
    "output": "{{ steps.look.output }}",
}  # fmt: skip
FORMAT = {
    "name": "formatted",
    "steps": [{"id": "look", "uses": "transform", "with": {
        "text": "{{ input.fmt.format(input.obj) }}",
        "attr": "{{ input.obj | attr(input.attr) }}",
    }}],
    "output": "{{ steps.look.output }}",
}  # fmt: skip


@pytest.fixture(scope="module")
async def probing(
    backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    directory: Path = tmp_path_factory.mktemp("probing")
    async with own_database(backend_url, directory) as url:
        app = build_app(url, directory, workflows=[PROBE, FORMAT])
        async with running(app) as http:
            yield http, bearer(await Accounts(app, http).token(Role.operator))


@pytest.mark.parametrize(
    "attr", ["__class__", "__globals__", "__init__", "__dict__", "items", "keys", "__len__"]
)
async def test_input_cannot_name_its_way_out_of_the_sandbox(
    probing: tuple[httpx.AsyncClient, dict[str, str]], attr: str
) -> None:
    client, headers = probing
    for name, data in (
        ("probe", {"obj": {"a": 1}, "attr": attr}),
        ("formatted", {"obj": {"a": 1}, "attr": attr, "fmt": f"{{0.{attr}}}"}),
        ("formatted", {"obj": "text", "attr": attr, "fmt": "{0.__class__.__mro__}"}),
    ):
        run = await trigger_run(client, headers, name, data)
        status = await finished_run(client, headers, run["workflow_id"])
        text = json.dumps(status)
        assert status["status"] == "failed", text
        for leak in ("<class", "<built-in", "<function", "<method", "__builtins__", "mappingproxy"):
            assert leak not in text, (name, attr, text)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ dict.__init__.__globals__ }}",
        "{{ dict.mro() }}",
        "{{ input.__class__ }}",
        "{{ input.items.__globals__ }}",
        "{% import 'os' as os %}{{ os }}",
        "{% include '/etc/passwd' %}",
        "{% extends '/etc/passwd' %}",
        "{{ config }}",
        "{{ request }}",
        "{{ '%s' % input }}{{ '{0.__class__}'.format(input) }}",
        "{{ range(10**9) | list }}",
        "{{ 'x' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "{% set x = [] %}{% for i in range(10000) %}{{ x.append(i) }}{% endfor %}",
    ],
)
def test_expressions_cannot_escape_the_sandbox(source: str) -> None:
    """Written into a definition by whoever controls `WORKFLOWS_DIR`: refused when checked or
    when evaluated, within the deadline, never a value that reaches Python's internals."""
    try:
        expressions.check(source)
        result = expressions.evaluate(source, {"input": {"a": 1}, "steps": {}}, timeout=1)
    except expressions.ExpressionError:
        return
    pytest.fail(f"{source!r} evaluated to {str(result)[:200]!r}")
