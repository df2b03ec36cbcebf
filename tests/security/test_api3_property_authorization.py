"""API3, broken object property-level authorisation: what answers show, and what bodies set.

No answer carries a password, a hash, a secret, a key digest or the signing key; every GET of
every resource and every create answer is searched. Fields a client must not set (`tenant_id`,
`id`, `role` where it is not theirs to give, `created_at`, ...) are refused with a 422 naming
the field, never applied.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.conftest import TEST_JWT_SECRET, Accounts
from tests.security.conftest import ORDER, Tenant, bearer, operations
from workflow_engine.auth.permissions import Role

SECRET_NAMES = re.compile(
    r"password|passwd|hash|digest|secret|salt|private|signing|token_generation|refresh_token|jti",
    re.IGNORECASE,
)
# Keys that look secret but are not: what they hold is named in the docs.
ALLOWED_KEYS = {"key"}  # the API key itself, in its create answer only (checked below)


def _walk(document: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append((f"{path}.{key}", value))
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(_walk(value, f"{path}[{index}]"))
    return found


def leaks(document: Any, secrets: list[str]) -> list[str]:
    problems = []
    for where, value in _walk(document):
        name = where.rsplit(".", 1)[-1]
        if SECRET_NAMES.search(name) and name not in ALLOWED_KEYS:
            problems.append(f"field {where}")
        if isinstance(value, str) and (
            value.startswith("$argon2") or any(secret in value for secret in secrets)
        ):
            problems.append(f"secret value at {where}")
    return problems


@pytest.fixture(scope="module")
def secrets(alice: Tenant, accounts: Accounts) -> list[str]:
    # An API key is `wek_<id>_<secret>`, and the secret may hold underscores itself.
    return [TEST_JWT_SECRET, accounts.password, alice.api_key, alice.api_key.split("_", 2)[2]]


async def test_no_get_answer_carries_a_secret(
    app: FastAPI, client: httpx.AsyncClient, alice: Tenant, secrets: list[str]
) -> None:
    ids = {**alice.ids, "name": "order_summary", "run_id": alice.ids["workflow_id"]}
    read = []
    for op in operations(app):
        if op.method != "GET" or op.path in ("/api/v1/events/stream",) or "swagger" in op.path:
            continue
        if op.path == "/ui" or op.path.startswith("/ui/static/"):
            continue  # a redirect to the shell; the dashboard's code and styles
        if op.path == "/api/v1/openapi.json":
            continue
        url = op.url(ids)
        response = await client.get(url, headers=alice.headers())
        assert response.status_code == 200, f"{url}: {response.text}"
        read.append(url)
        if response.headers["content-type"].startswith("application/json"):
            assert not leaks(response.json(), secrets), (url, leaks(response.json(), secrets))
        else:
            assert not any(secret in response.text for secret in secrets), url
            assert "$argon2" not in response.text, url
    assert len(read) >= 20  # the walk reached the resources, not a handful of routes


async def test_create_answers_carry_no_secret_but_the_new_key_once(
    client: httpx.AsyncClient, alice: Tenant, secrets: list[str]
) -> None:
    password = "another long unusual passphrase"
    user = await client.post(
        "/api/v1/users",
        headers=alice.headers(),
        json={"email": f"new-{uuid.uuid4().hex[:6]}@example.com", "role": "viewer",
              "password": password},
    )  # fmt: skip
    assert user.status_code == 201
    assert not leaks(user.json(), [*secrets, password]), user.json()
    key = await client.post(
        "/api/v1/auth/api-keys", headers=alice.headers(), json={"name": "once", "role": "viewer"}
    )
    assert key.status_code == 201
    value = key.json()["key"]
    assert not leaks({k: v for k, v in key.json().items() if k != "key"}, [*secrets, value])
    listed = await client.get("/api/v1/auth/api-keys", headers=alice.headers())
    assert value not in listed.text
    assert value.split("_", 2)[2] not in listed.text  # `wek_<id>_<secret>`
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.json()["email"], "password": password}
    )
    assert password not in login.text
    assert "$argon2" not in login.text


async def test_problem_answers_never_echo_a_password_or_secret(
    client: httpx.AsyncClient, alice: Tenant
) -> None:
    password = "Sup3r-Secret-Passw0rd-To-Not-Echo"
    answers = [
        await client.post("/api/v1/auth/login", json={"email": "x", "password": password}),
        await client.post("/api/v1/users", headers=alice.headers(),
                          json={"email": "bad", "role": "viewer", "password": password}),
        await client.post("/api/v1/users", headers=alice.headers(),
                          json={"email": "a@example.com", "role": "king", "password": password}),
        await client.post("/api/v1/auth/refresh", json={"refresh_token": password * 30}),
    ]  # fmt: skip
    for answer in answers:
        assert 400 <= answer.status_code < 500
        assert password not in answer.text, answer.text


# --- mass assignment ---------------------------------------------------------------------------

FORGED = {
    "tenant": "someone-else",
    "tenant_id": str(uuid.uuid4()),
    "id": str(uuid.uuid4()),
    "created_at": "2000-01-01T00:00:00Z",
    "created_by": "user:00000000-0000-0000-0000-000000000000",
    "is_active": False,
    "status": "completed",
    "actor": "system:engine",
    "token_generation": 0,
    "password_hash": "$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA",
    "key_hash": "00",
    "prefix": "wek_chosen",
    "owner": "system",
    "version": 99,
}


def _creations(alice: Tenant) -> list[tuple[str, str, dict[str, Any], set[str]]]:
    """(method, path, a valid body, fields the body may carry)."""
    unique = uuid.uuid4().hex[:6]
    return [
        ("POST", "/api/v1/users",
         {"email": f"m-{unique}@example.com", "role": "viewer",
          "password": "a long unusual passphrase"}, {"is_active"}),
        ("PATCH", f"/api/v1/users/{alice.ids['user_id']}", {"role": "viewer"}, {"is_active"}),
        ("POST", "/api/v1/auth/api-keys", {"name": f"m-{unique}", "role": "viewer"}, set()),
        ("POST", "/api/v1/workflows/trigger",
         {"workflow_name": "order_summary", "data": ORDER}, {"version"}),
        ("POST", "/api/v1/schedules",
         {"name": f"m-{unique}", "workflow_name": "order_summary", "data": ORDER,
          "interval_seconds": 3600}, set()),
        ("PATCH", f"/api/v1/schedules/{alice.ids['schedule_id']}", {"priority": 0}, set()),
        ("POST", "/api/v1/registry/register",
         {"service_name": f"m-{unique}", "service_url": "http://127.0.0.1:9/",
          "ttl_seconds": 60}, set()),
        ("POST", "/events",
         {"aggregate_type": "order", "aggregate_id": f"m-{unique}", "event_type": "Noted",
          "data": {}}, set()),
        ("POST", "/api/v1/auth/login", {"email": "a@example.com", "password": "x"}, set()),
    ]  # fmt: skip


@pytest.mark.parametrize("field", sorted(FORGED))
async def test_fields_a_client_may_not_set_are_refused(
    client: httpx.AsyncClient, alice: Tenant, field: str
) -> None:
    applied = []
    for method, path, body, allowed in _creations(alice):
        if field in allowed:
            continue
        response = await client.request(
            method, path, headers=alice.headers(), json={**body, field: FORGED[field]}
        )
        if response.status_code != 422:
            applied.append(f"{method} {path}: {response.status_code} {response.text[:150]}")
            continue
        locations = [".".join(map(str, error["loc"])) for error in response.json()["errors"]]
        assert any(field in location for location in locations), (path, locations)
    assert not applied, applied


async def test_the_caller_cannot_raise_their_own_role(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    login = await accounts.login(await accounts.user(Role.operator, alice.name))
    me = login["user"]["id"]
    headers = bearer(login["token"])
    assert (await client.patch(f"/api/v1/users/{me}", headers=headers,
                               json={"role": "admin"})).status_code == 403  # fmt: skip
    key = await client.post("/api/v1/auth/api-keys", headers=headers,
                            json={"name": "escalate", "role": "admin"})  # fmt: skip
    assert key.status_code == 403
    # An admin cannot take away their own admin role either (no tenant left without one).
    admin = await accounts.login(await accounts.user(Role.admin, alice.name))
    demoted = await client.patch(
        f"/api/v1/users/{admin['user']['id']}", headers=bearer(admin["token"]),
        json={"role": "viewer"},
    )  # fmt: skip
    assert demoted.status_code in (409, 422), demoted.text
