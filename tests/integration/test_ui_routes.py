"""The dashboard's server side (docs/ui.md) as a browser meets it: one shell for every page and
every caller, its static files with ETags, the security headers, and `UI_ENABLED=false`."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import own_database
from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import ROLE_PERMISSIONS, Role
from workflow_engine.config import to_async_url
from workflow_engine.db.migrate import upgrade
from workflow_engine.ui.assets import STATIC_DIR
from workflow_engine.ui.shell import script_json
from workflow_engine.version import __version__

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGES = [
    "/ui/",
    "/ui/runs",
    f"/ui/runs/{uuid.uuid4()}",
    "/ui/approvals",
    "/ui/templates",
    "/ui/templates/customer_support",
    "/ui/schedules",
    "/ui/usage",
    "/ui/services",
    "/ui/admin",
    "/ui/runs?status=failed&workflow=order_summary",
]
ICON = "/ui/static/icon.svg"
CONFIG = re.compile(rb'<script type="application/json" id="ui-config">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    # The dashboard's routes read nothing from the database: SQLite alone shows them.
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-db') / 'test.db'}"
    upgrade(to_async_url(url))
    return url


@pytest.fixture(scope="module")
async def ui(
    sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = build_app(sqlite_url, tmp_path_factory.mktemp("ui-data"), DEMO_SERVICES="false")
    async with running(app) as client:
        yield app, client


@pytest.fixture(scope="module")
async def callers(ui: tuple[FastAPI, httpx.AsyncClient]) -> dict[str, dict[str, str]]:
    app, client = ui
    accounts = Accounts(app, client)
    tenant = await accounts.tenant()
    return {
        "signed out": {},
        "viewer": {"Authorization": f"Bearer {await accounts.token(Role.viewer, tenant)}"},
        "admin": {"Authorization": f"Bearer {await accounts.token(Role.admin, tenant)}"},
    }


def _assert_browser_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"


async def test_every_page_is_the_same_shell_for_every_caller(
    ui: tuple[FastAPI, httpx.AsyncClient], callers: dict[str, dict[str, str]]
) -> None:
    _, client = ui
    bodies = set()
    for path in PAGES:
        for who, headers in callers.items():
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, (path, who, response.text)
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            _assert_browser_headers(response)
            bodies.add(response.content)
    assert len(bodies) == 1  # no user data, no path-specific content
    [shell] = bodies
    assert shell.startswith(b"<!doctype html>")
    assert b'<script type="module" src="/ui/static/app.js"></script>' in shell
    assert b'<link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml">' in shell
    assert b'<div id="app"></div>' in shell


async def test_the_shell_embeds_the_role_matrix_the_api_enforces(
    ui: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ui
    shell = (await client.get("/ui/")).content
    [embedded] = CONFIG.findall(shell)
    assert not set(b"<>&") & set(embedded)
    config = json.loads(embedded)
    assert config["version"] == __version__
    assert list(config["roles"]) == [role.value for role in Role]
    assert {role: set(permissions) for role, permissions in config["roles"].items()} == {
        role.value: {p.value for p in permissions} for role, permissions in ROLE_PERMISSIONS.items()
    }


def test_configuration_json_cannot_end_its_script_element() -> None:
    value = {"text": "</script><script>alert(1)</script> & <!--"}
    rendered = script_json(value)
    assert not set("<>&") & set(rendered)
    assert json.loads(rendered) == value


async def test_ui_redirects_to_the_shell(ui: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = ui
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/ui")
        assert response.status_code == 308
        assert response.headers["location"] == "/ui/"
    followed = await client.get("/ui", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.url.path == "/ui/"


async def test_head_answers_the_headers_of_get_without_a_body(
    ui: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ui
    for path in ("/ui/runs", ICON):
        got = await client.get(path)
        head = await client.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        for name in ("content-type", "content-security-policy", "cache-control"):
            assert head.headers[name] == got.headers[name], name
        assert head.headers.get("etag") == got.headers.get("etag")


async def test_assets_carry_a_strong_etag_and_revalidate_with_304(
    ui: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ui
    response = await client.get(ICON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content == (STATIC_DIR / "icon.svg").read_bytes()
    etag = response.headers["etag"]
    assert etag == f'"{hashlib.sha256(response.content).hexdigest()}"'  # strong: no W/
    _assert_browser_headers(response)

    again = await client.get(ICON, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "no-cache"
    among = await client.get(ICON, headers={"If-None-Match": f'"stale", W/{etag}'})
    assert among.status_code == 304
    stale = await client.get(ICON, headers={"If-None-Match": '"an-older-version"'})
    assert stale.status_code == 200
    assert stale.content == response.content


async def test_every_asset_of_the_folder_is_served_with_its_media_type(
    ui: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ui
    media_types = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    files = [p for p in STATIC_DIR.iterdir() if re.fullmatch(r"[a-z0-9-]+\.(js|css|svg)", p.name)]
    assert "icon.svg" in {p.name for p in files}
    for path in files:
        response = await client.get(f"/ui/static/{path.name}")
        assert response.status_code == 200, path.name
        assert response.headers["content-type"] == media_types[path.suffix]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/no-such-file.js",
        "/ui/static/icon.png",
        "/ui/static/Icon.svg",
        "/ui/static/..%2Fshell.html",
        "/ui/static/%2E%2E%2Fshell.py",
        "/ui/static/.icon.svg",
        "/ui/static/shell.html",
        "/ui/static/",
        "/ui/static/sub/icon.svg",
    ],
)
async def test_unknown_and_traversing_asset_names_are_problem_404s(
    ui: tuple[FastAPI, httpx.AsyncClient], path: str
) -> None:
    _, client = ui
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
    assert b"<html" not in response.content


async def test_the_dashboard_is_not_in_the_openapi_document(
    ui: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ui
    document = (await client.get("/api/v1/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/ui")]


async def test_dashboard_paths_are_not_rate_limited(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(
        sqlite_url, tmp_path, DEMO_SERVICES="false",
        RATE_LIMIT_PER_MINUTE="1", RATE_LIMIT_BURST="2",
    )  # fmt: skip
    async with running(app) as client:
        answers = [await client.get(path) for _ in range(10) for path in ("/ui", *PAGES, ICON)]
        assert {response.status_code for response in answers} == {200, 308}
        assert not [r for r in answers if "ratelimit-limit" in r.headers]
        # The same client is limited where the API is: the exemption is the dashboard's alone.
        statuses = [(await client.get("/uix")).status_code for _ in range(5)]
        assert 429 in statuses


async def test_ui_disabled_removes_every_dashboard_path(tmp_path: Path) -> None:
    async with own_database("sqlite", tmp_path) as url:
        app = build_app(url, tmp_path, DEMO_SERVICES="false", UI_ENABLED="false")
        async with running(app) as client:
            for path in ("/ui", *PAGES, ICON, "/ui/static/app.js"):
                for method in ("GET", "HEAD"):
                    response = await client.request(method, path)
                    assert response.status_code == 404, (method, path)
            assert (await client.get("/health")).status_code == 200
