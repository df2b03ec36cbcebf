"""The `http.request` node against a real local HTTP server; `env` in expressions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.nodes.http import _target, host_allowed
from workflow_engine.nodes.registry import FatalStepError


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/json": (200, "application/json", json.dumps({"greeting": "hello"}).encode()),
            "/text": (200, "text/plain; charset=utf-8", b"plain words"),
            "/missing": (404, "application/json", b'{"error": "no such thing"}'),
            "/broken": (503, "text/plain", b"try later"),
            "/big": (200, "text/plain", b"x" * 10_000),
            "/moved": (302, "text/plain", b""),
            "/odd-charset": (200, "text/plain; charset=punycode", "café".encode()),
        }
        status, kind, body = routes.get(self.path.split("?")[0], (404, "text/plain", b""))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if status == 302:
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        received = json.loads(self.rfile.read(length) or b"null")
        body = json.dumps({"received": received, "auth": self.headers.get("Authorization")})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"id": "call", "uses": "http.request", "with": arguments,
                   "retry": {"max_attempts": 3, "initial_delay": 0.05, "jitter": 0}}],
        "output": "{{ steps.call.output }}",
    }  # fmt: skip


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.setenv("WE_TEST_REGION", "eu-west")
    monkeypatch.setenv("WE_TEST_SECRET", "not for workflows")
    workflows = [
        _call("get_json", url=f"{upstream}/json"),
        _call("get_text", url=f"{upstream}/text", params={"q": "{{ input.q }}"}),
        _call("post_json", url=f"{upstream}/echo", method="POST",
              json={"order": "{{ input.order }}"}, headers={"Authorization": "Bearer abc"}),
        _call("not_found", url=f"{upstream}/missing"),
        _call("unavailable", url=f"{upstream}/broken"),
        _call("too_big", url=f"{upstream}/big"),
        _call("redirected", url=f"{upstream}/moved"),
        _call("elsewhere", url="http://internal.example.invalid/"),
        _call("odd_charset", url=f"{upstream}/odd-charset"),
        _call("metadata", url="http://169.254.169.254/latest/meta-data"),
        _call("loopback_by_wildcard", url=f"{upstream.replace('127.0.0.1', 'localhost')}/json"),
        _call("bad_header", url=f"{upstream}/json",
              headers={"Authorization": "Bearer {{ env.WE_TEST_REGION }}\nX-Injected: 1"}),
        {"name": "env_reader", "steps": [
            {"id": "read", "uses": "transform", "with": {"region": "{{ env.WE_TEST_REGION }}"}}],
         "output": "{{ steps.read.output.region }}"},
        {"name": "env_secret", "steps": [
            {"id": "read", "uses": "transform", "with": {"secret": "{{ env.WE_TEST_SECRET }}"}}]},
    ]  # fmt: skip
    app = build_app(
        database_url, tmp_path, workflows=workflows,
        HTTP_ALLOWED_HOSTS="127.0.0.1, 169.254.169.254, *",
        HTTP_MAX_RESPONSE_BYTES="4096", WORKFLOW_ENV="WE_TEST_REGION",
    )  # fmt: skip
    async with running(app) as client:
        token = await Accounts(app, client).token(Role.operator)
        yield client, {"Authorization": f"Bearer {token}"}


async def _run(api: Any, name: str, data: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    client, headers = api
    run = await trigger_run(client, headers, name, data or {})
    status = await finished_run(client, headers, run["workflow_id"])
    results = (await client.get(run["links"]["results"], headers=headers)).json()
    return status, results


async def test_successful_calls_give_status_headers_and_body(api: Any) -> None:
    status, results = await _run(api, "get_json")
    assert status["status"] == "completed", status
    assert results["output"]["status"] == 200
    assert results["output"]["json"] == {"greeting": "hello"}
    assert results["output"]["headers"]["content-type"] == "application/json"
    _, text = await _run(api, "get_text", {"q": "x"})
    assert text["output"]["text"] == "plain words"
    _, posted = await _run(api, "post_json", {"order": "12345"})
    assert posted["output"]["status"] == 201
    assert posted["output"]["json"] == {"received": {"order": "12345"}, "auth": "Bearer abc"}


@pytest.mark.parametrize(
    ("name", "attempts", "error_class", "message"),
    [
        ("not_found", 1, "http_404", "answered 404"),  # a client error: never retried
        ("unavailable", 3, "http_503", "answered 503"),  # retried, then failed
        ("too_big", 1, "FatalStepError", "larger than 4096 bytes"),
        ("redirected", 1, "FatalStepError", "redirects are not followed"),
        ("elsewhere", 3, "dns", "cannot resolve"),  # allowed by `*`, but no such name
        ("bad_header", 1, "FatalStepError", "a header name or value is malformed"),
        ("metadata", 1, "FatalStepError", "link-local or metadata address"),
        ("loopback_by_wildcard", 1, "FatalStepError", "name it exactly in HTTP_ALLOWED_HOSTS"),
    ],
)
async def test_failures_are_classified(
    api: Any, name: str, attempts: int, error_class: str, message: str
) -> None:
    status, results = await _run(api, name)
    step = steps_of(status)["call"]
    assert (status["status"], step["attempts"]) == ("failed", attempts)
    assert step["error"]["class"] == error_class
    assert message in step["error"]["message"]
    assert results["error"]["step_id"] == "call"


async def test_a_malformed_header_never_echoes_its_value(api: Any) -> None:
    status, _ = await _run(api, "bad_header")
    assert "eu-west" not in str(status)  # the header's value (here from env) stays out


async def test_unknown_charsets_decode_as_utf8(api: Any) -> None:
    _, results = await _run(api, "odd_charset")
    assert results["output"]["text"] == "café"


async def test_expressions_see_only_the_exposed_environment(api: Any) -> None:
    _, results = await _run(api, "env_reader")
    assert results["output"] == "eu-west"
    status, _ = await _run(api, "env_secret")
    assert status["status"] == "failed"
    assert "WE_TEST_SECRET" in steps_of(status)["read"]["error"]["message"]


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("api.example.com", ("api.example.com",), True),
        ("API.Example.com.", ("api.example.com",), True),
        ("eu.api.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),
        ("evil-example.com", ("*.example.com",), False),
        ("anything.test", ("*",), True),
        ("api.example.com", (), False),
    ],
)
def test_host_patterns(host: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://other.example.com/", "not in HTTP_ALLOWED_HOSTS"),
        ("ftp://api.example.com/", "only http and https"),
        ("http://user:pw@api.example.com/", "credentials in the URL"),
        ("http://[::1", "not a URL"),
    ],
)
def test_targets_outside_the_allowlist_are_refused(url: str, message: str) -> None:
    with pytest.raises(FatalStepError, match=message):
        _target(url, ("api.example.com",))
