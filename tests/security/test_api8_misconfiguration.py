"""API8, security misconfiguration: what an unauthenticated caller learns, and what the data
directory shows to other users of the machine.

- Without a credential, every secured operation answers the same 401 whatever the id, query
  or body: authentication comes before validation and before lookups, so a caller learns
  nothing of ids or body shapes. With a credential whose role lacks the permission, the same
  holds with 403.
- Login answers alike for an unknown email, a wrong password and a deactivated account.
- The public health page names no file system path, host name or process.
- What DATA_DIR holds (SQLite database, signing secret) is the owner's alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.conftest import Accounts, running
from tests.security.conftest import Tenant, bearer, build_app, operations
from workflow_engine.auth.permissions import Role, allows
from workflow_engine.config import to_async_url
from workflow_engine.config.dev_secret import development_jwt_secret
from workflow_engine.db.migrate import upgrade

# What an unauthenticated caller may send to each secured operation; none may change the answer.
VARIANTS = [
    ("a random id", lambda path: path, None, ""),
    ("an id of the wrong shape", lambda path: path.replace("{", "x{"), None, ""),
    ("a bad query", lambda path: path, None, "?limit=-1&cursor=%%%&after=x"),
    ("a malformed body", lambda path: path, b'{"unterminated', ""),
    ("a body of the wrong shape", lambda path: path, b'{"unexpected": [1, 2, 3]}', ""),
    ("a body that is not UTF-8", lambda path: path, b'{"x": "\xff\xfe"}', ""),
]


def _target(path: str, shape: str) -> str:
    values = {
        part[1:-1]: ("not a valid id!" if shape == "bad" else str(uuid.uuid4()))
        for part in path.split("/")
        if part.startswith("{")
    }
    return path.format(**values)


@pytest.mark.parametrize("credential", ["none", "garbage", "forbidden"])
async def test_who_you_are_is_checked_before_what_you_sent(
    app: FastAPI, client: httpx.AsyncClient, alice: Tenant, credential: str
) -> None:
    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "forbidden": alice.headers(Role.viewer),
    }[credential]
    wrong = []
    for op in operations(app):
        if op.permission is None or op.method == "HEAD":
            continue
        if credential == "forbidden" and allows(Role.viewer, op.permission):
            continue
        expected = 403 if credential == "forbidden" else 401
        answers = set()
        for name, _shape, body, query in VARIANTS:
            url = _target(op.path, "bad" if "wrong shape" in name else "") + query
            send = body if op.method in ("POST", "PATCH", "PUT") else None
            response = await client.request(
                op.method, url, content=send,
                headers={**headers, "Content-Type": "application/json"},
            )  # fmt: skip
            answers.add((response.status_code, response.json()["detail"]))
            if response.status_code != expected:
                wrong.append(f"{op.method} {op.path} with {name}: {response.status_code}")
        if len(answers) != 1:
            wrong.append(f"{op.method} {op.path}: the answers differ: {answers}")
    assert not wrong, "\n".join(wrong)


async def test_login_answers_alike_whoever_the_email_belongs_to(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    real = await accounts.user(Role.viewer, alice.name)
    inactive_login = await accounts.login(await accounts.user(Role.viewer, alice.name))
    changed = await client.patch(f"/api/v1/users/{inactive_login['user']['id']}",
                                 headers=alice.headers(), json={"is_active": False})  # fmt: skip
    assert changed.status_code == 200
    attempts = {
        "unknown email": {"email": f"nobody-{uuid.uuid4().hex[:6]}@example.com",
                          "password": accounts.password},
        "wrong password": {"email": real, "password": "not the password 123"},
        "deactivated": {"email": inactive_login["user"]["email"], "password": accounts.password},
        "username field": {"username": f"nobody-{uuid.uuid4().hex[:6]}",
                           "password": accounts.password},
    }  # fmt: skip
    answers = {}
    for name, body in attempts.items():
        response = await client.post("/api/v1/auth/login", json=body)
        document = response.json()
        answers[name] = (
            response.status_code,
            document["detail"],
            document["type"],
            sorted(h for h in response.headers if h not in ("x-correlation-id", "content-length")),
        )
    assert len(set(map(str, answers.values()))) == 1, answers
    assert answers["unknown email"][0] == 401


async def test_the_public_health_page_names_no_path_host_or_process(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    page = (await client.get("/health/detailed")).text
    for private in (
        str(data_dir),
        await asyncio.to_thread(os.path.realpath, data_dir),
        socket.gethostname(),
        f":{os.getpid()}:",
    ):
        assert private not in page, private
    names = {
        service["name"] for service in (await client.get("/health/detailed")).json()["services"]
    }
    assert {"database", "data_dir", "worker"} <= names  # still there, only less detailed


async def test_unknown_paths_and_methods_reveal_no_stack(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/.env"), ("GET", "/api/v1/../../etc/passwd"),
                         ("TRACE", "/health"), ("GET", "/api/v2/users"),
                         ("GET", "/api/v1/users/%00"), ("PUT", "/api/v1/users")):  # fmt: skip
        response = await client.request(method, path)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        text = response.text.lower()
        for tell in (
            "traceback",
            "starlette",
            "fastapi",
            "uvicorn",
            "sqlalchemy",
            "python",
            'file "',
        ):
            assert tell not in text, (method, path, response.text)
        assert "server" not in response.headers
        assert "x-powered-by" not in response.headers


# --- the data directory ------------------------------------------------------------------------


async def test_what_data_dir_holds_is_the_owners_alone(tmp_path: Path) -> None:
    """A development server started on a data directory that does not exist yet, as
    `workflow-engine serve` prepares it: the signing secret, the migrated SQLite database (and
    its WAL files), then the app, which writes to the database while it runs."""
    data_dir = tmp_path / "fresh" / "data"
    old = os.umask(0o022)  # the usual umask: what is not made private explicitly is readable
    try:
        development_jwt_secret(data_dir)
        url = f"sqlite:///{data_dir / 'workflow-engine.db'}"
        await asyncio.to_thread(upgrade, to_async_url(url))
        app = build_app(url, data_dir, JWT_SECRET=None)
        async with running(app) as client:
            token = await Accounts(app, client).token(Role.admin)
            created = await client.post("/api/v1/auth/api-keys", headers=bearer(token),
                                        json={"name": "k", "role": "viewer"})  # fmt: skip
            assert created.status_code == 201
    finally:
        os.umask(old)
    found = sorted(data_dir.rglob("*"))
    assert any(path.name == "jwt-secret" for path in found)
    assert any(path.suffix == ".db" for path in found)
    exposed = [
        f"{path.relative_to(data_dir)}: {stat.filemode(path.stat().st_mode)}"
        for path in [data_dir, *found]
        if path.stat().st_mode & 0o077
    ]
    assert not exposed, exposed
