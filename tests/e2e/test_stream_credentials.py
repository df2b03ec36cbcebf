"""An open stream ends within a second of its credential ending — logged out, its user
deactivated, its API key revoked, or its access token expired — whether the change was made
through the process serving the stream or another one sharing the database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from tests.e2e.conftest import Server
from workflow_engine.auth.permissions import Role
from workflow_engine.auth.tokens import TokenIssuer

pytestmark = pytest.mark.e2e

SECRET = "streams-end-with-their-credential-secret!"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "Streams-End-With-Credentials-2026"
PASSWORD = "a long unusual passphrase"
NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("e2e.drip")
async def drip(ctx: NodeContext, *, lines: int) -> dict:
    for n in range(lines):
        ctx.log.info(f"drop {n}")
        await asyncio.sleep(0.2)
    return {"drops": lines}
"""
FLOW = "name: drip\nsteps:\n  - id: drip\n    uses: e2e.drip\n    with: {lines: 300}\n"
#: The promise is one second; a stream that is never let go waits for the read timeout.
PROMISE = 1.0


@dataclass
class Watched:
    """A stream read on its own thread, and when and how it ended."""

    url: str
    headers: dict[str, str]
    opened: threading.Event = field(default_factory=threading.Event)
    last: dict[str, str] = field(default_factory=dict)
    ended_at: float | None = None
    ended_on_clock: float | None = None  # wall-clock time, to compare with a token's `exp`
    status: int | None = None

    def start(self) -> Watched:
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(10), f"{self.url} did not open"
        return self

    def _read(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=20) as response:
            self.status = response.status_code
            self.opened.set()
            message: dict[str, str] = {}
            for line in response.iter_lines():
                if not line:
                    if "event" in message:
                        self.last = message
                    message = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    message[name] = value.removeprefix(" ")
        self.ended_at = time.monotonic()
        self.ended_on_clock = time.time()

    def ended_within(self, since: float, seconds: float) -> bool:
        deadline = since + 15
        while self.ended_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.ended_at is not None, f"{self.url} still open"
        return self.ended_at - since <= seconds

    @property
    def closed_because(self) -> str:
        assert self.last.get("event") == "closed", self.last
        body = json.loads(self.last["data"])
        assert body["status"] == 401
        return str(body["detail"])


def _servers(
    server_factory: type[Server], database_url: str, tmp_path: Path
) -> tuple[Server, Server]:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "e2e_nodes.py").write_text(NODES)
    (flows / "drip.yaml").write_text(FLOW)
    env = {
        "DATABASE_URL": database_url, "JWT_SECRET": SECRET, "PYTHONPATH": str(modules),
        "NODE_MODULES": "e2e_nodes", "WORKFLOWS_DIR": str(flows),
        "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL, "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
    }  # fmt: skip
    first = server_factory(env={**env, "DATA_DIR": str(tmp_path / "a")}).start()
    second = server_factory(env={**env, "DATA_DIR": str(tmp_path / "b")}).start()
    return first, second


def _login(server: Server, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _user(server: Server, admin: dict[str, str], role: Role = Role.operator) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "role": role.value, "password": PASSWORD}
    created = httpx.post(f"{server.url}/api/v1/users", headers=admin, json=body)
    assert created.status_code == 201, created.text
    return email


def _short_lived(headers: dict[str, str], seconds: float) -> tuple[dict[str, str], int]:
    """A token like the one in `headers` (same user, session and generation), signed with the
    servers' secret, that expires in `seconds`; and its `exp`."""
    claims = jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})
    issuer = TokenIssuer(SECRET, issuer=claims["iss"], audience=claims["aud"],
                         lifetime=timedelta(seconds=seconds), leeway=timedelta())  # fmt: skip
    issued = issuer.issue(
        user_id=uuid.UUID(claims["sub"]), tenant_id=uuid.UUID(claims["tid"]),
        role=Role(claims["role"]), session_id=uuid.UUID(claims["sid"]),
        generation=claims["gen"],
    )  # fmt: skip
    expires = jwt.decode(issued.token, options={"verify_signature": False})["exp"]
    return {"Authorization": f"Bearer {issued.token}"}, int(expires)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_streams_end_within_a_second_of_their_credential(
    server_factory: type[Server], database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'shared.db'}"
        if database == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    here, there = _servers(server_factory, url, tmp_path)
    admin = _login(here, ADMIN_EMAIL, ADMIN_PASSWORD)
    events = "/api/v1/events/stream"

    # Logged out through the process serving the stream, and through the other one.
    same = _login(here, _user(here, admin))
    other = _login(here, _user(here, admin))
    run = httpx.post(f"{here.url}/api/v1/workflows/trigger", headers=same,
                     json={"workflow_name": "drip", "data": {}})  # fmt: skip
    assert run.status_code == 202, run.text
    logs = Watched(f"{here.url}{run.json()['links']['logs']}?follow=true", same).start()
    streams = {
        "same process": Watched(f"{here.url}{events}", same).start(),
        "other process": Watched(f"{there.url}{events}", other).start(),
    }
    time.sleep(0.5)  # every stream is past its first read
    for headers in (same, other):
        changed = time.monotonic()
        assert httpx.post(f"{here.url}/api/v1/auth/logout", headers=headers).status_code == 204
        stream = streams["same process" if headers is same else "other process"]
        assert stream.ended_within(changed, PROMISE)
        assert stream.closed_because == "the token has been revoked"
    assert logs.ended_within(changed, PROMISE)
    assert logs.closed_because == "the token has been revoked"

    # A user deactivated, an API key revoked: streams in the other process.
    email = _user(here, admin)
    user_id = httpx.get(f"{here.url}/api/v1/auth/me", headers=_login(here, email)).json()["id"]
    deactivated = Watched(f"{there.url}{events}", _login(here, email)).start()
    key = httpx.post(f"{here.url}/api/v1/auth/api-keys", headers=admin,
                     json={"name": "streaming", "role": "viewer"}).json()  # fmt: skip
    revoked = Watched(f"{there.url}{events}", {"X-API-Key": key["key"]}).start()
    time.sleep(0.5)
    changed = time.monotonic()
    patched = httpx.patch(
        f"{here.url}/api/v1/users/{user_id}", headers=admin, json={"is_active": False}
    )
    assert patched.status_code == 200, patched.text
    assert deactivated.ended_within(changed, PROMISE)
    assert deactivated.closed_because == "the account is deactivated"
    changed = time.monotonic()
    deleted = httpx.delete(f"{here.url}/api/v1/auth/api-keys/{key['id']}", headers=admin)
    assert deleted.status_code == 204
    assert revoked.ended_within(changed, PROMISE)
    assert revoked.closed_because == "the API key is not valid, expired or revoked"

    # An access token reaching its expiry while its stream is open.
    short_lived, expires = _short_lived(admin, 3)
    expiring = Watched(f"{there.url}{events}", short_lived).start()
    assert expiring.ended_within(time.monotonic(), 15)
    assert expiring.ended_on_clock is not None
    assert expires <= expiring.ended_on_clock <= expires + PROMISE
    assert expiring.closed_because == "the credential expired"
    assert here.stop() == 0
    assert there.stop() == 0
