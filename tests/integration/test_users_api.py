"""The users API: an admin manages its own tenant's users and nobody else's."""

from __future__ import annotations

import asyncio
import uuid

from tests.integration.conftest import Accounts
from workflow_engine.api.pagination import encode_cursor
from workflow_engine.auth.permissions import Role
from workflow_engine.auth.service import STANDING_TTL


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _admin(accounts: Accounts) -> tuple[str, str]:
    tenant = await accounts.tenant()
    return tenant, await accounts.token(Role.admin, tenant)


async def test_admin_creates_reads_and_pages_through_users(accounts: Accounts) -> None:
    _, token = await _admin(accounts)
    client = accounts.client
    for n in range(3):
        created = await client.post(
            "/api/v1/users",
            headers=bearer(token),
            json={"email": f"u{n}@example.com", "role": "viewer", "password": accounts.password},
        )
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"/api/v1/users/{created.json()['id']}"
    first = (await client.get("/api/v1/users?limit=2", headers=bearer(token))).json()
    assert len(first["items"]) == 2
    rest = (
        await client.get(
            f"/api/v1/users?limit=2&cursor={first['next_cursor']}", headers=bearer(token)
        )
    ).json()
    emails = [u["email"] for u in first["items"] + rest["items"]]
    assert emails == sorted(emails)
    assert len(emails) == 4  # three viewers and the admin
    assert rest["next_cursor"] is None
    one = first["items"][0]
    fetched = await client.get(f"/api/v1/users/{one['id']}", headers=bearer(token))
    assert fetched.json() == one


async def test_api_refuses_weak_passwords_duplicates_and_bad_cursors(accounts: Accounts) -> None:
    _, token = await _admin(accounts)
    client = accounts.client
    weak = await client.post(
        "/api/v1/users",
        headers=bearer(token),
        json={"email": "w@example.com", "role": "viewer", "password": "password"},
    )
    assert weak.status_code == 422
    assert "most common passwords" in weak.json()["detail"]
    body = {"email": "dup@example.com", "role": "viewer", "password": accounts.password}
    assert (await client.post("/api/v1/users", headers=bearer(token), json=body)).status_code == 201
    duplicate = await client.post("/api/v1/users", headers=bearer(token), json=body)
    assert duplicate.status_code == 409
    bad_cursor = await client.get("/api/v1/users?cursor=!!!", headers=bearer(token))
    assert bad_cursor.status_code == 422
    not_a_uuid = await client.get("/api/v1/users/not-a-uuid", headers=bearer(token))
    assert not_a_uuid.status_code == 422


async def test_another_tenants_users_are_not_found_and_unchanged(accounts: Accounts) -> None:
    _, token_a = await _admin(accounts)
    _, token_b = await _admin(accounts)
    victim = (
        await accounts.client.post(
            "/api/v1/users",
            headers=bearer(token_b),
            json={"email": "victim@example.com", "role": "operator", "password": accounts.password},
        )
    ).json()
    url = f"/api/v1/users/{victim['id']}"
    assert (await accounts.client.get(url, headers=bearer(token_a))).status_code == 404
    patched = await accounts.client.patch(url, headers=bearer(token_a), json={"is_active": False})
    assert patched.status_code == 404
    unknown = await accounts.client.get(f"/api/v1/users/{uuid.uuid4()}", headers=bearer(token_a))
    assert (
        unknown.json()["detail"]
        == (await accounts.client.get(url, headers=bearer(token_a))).json()["detail"]
    )
    listed = (await accounts.client.get("/api/v1/users", headers=bearer(token_a))).json()
    assert victim["id"] not in [u["id"] for u in listed["items"]]
    still = (await accounts.client.get(url, headers=bearer(token_b))).json()
    assert still["is_active"] is True
    assert still["role"] == "operator"


async def test_deactivation_ends_every_session_of_the_user(accounts: Accounts) -> None:
    tenant, admin_token = await _admin(accounts)
    email = await accounts.user(Role.operator, tenant)
    session = await accounts.login(email)
    user_id = session["user"]["id"]
    response = await accounts.client.patch(
        f"/api/v1/users/{user_id}", headers=bearer(admin_token), json={"is_active": False}
    )
    assert response.json()["is_active"] is False
    await asyncio.sleep(STANDING_TTL + 0.05)
    me = await accounts.client.get("/api/v1/auth/me", headers=bearer(session["token"]))
    assert me.status_code == 401
    refresh = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.status_code == 401
    login = await accounts.client.post(
        "/api/v1/auth/login", json={"email": email, "password": accounts.password}
    )
    assert login.status_code == 401


async def test_role_change_takes_effect_on_the_next_token(accounts: Accounts) -> None:
    tenant, admin_token = await _admin(accounts)
    email = await accounts.user(Role.viewer, tenant)
    session = await accounts.login(email)
    await accounts.client.patch(
        f"/api/v1/users/{session['user']['id']}",
        headers=bearer(admin_token),
        json={"role": "admin"},
    )
    await asyncio.sleep(STANDING_TTL + 0.05)
    old = await accounts.client.get("/api/v1/auth/me", headers=bearer(session["token"]))
    assert old.status_code == 401  # a token carrying the old role is no longer accepted
    refreshed = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.json()["user"]["role"] == "admin"
    users = await accounts.client.get("/api/v1/users", headers=bearer(refreshed.json()["token"]))
    assert users.status_code == 200


async def test_an_admin_cannot_lock_themselves_out(accounts: Accounts) -> None:
    _, token = await _admin(accounts)
    me = (await accounts.client.get("/api/v1/auth/me", headers=bearer(token))).json()
    for change in ({"role": "viewer"}, {"is_active": False}):
        response = await accounts.client.patch(
            f"/api/v1/users/{me['id']}", headers=bearer(token), json=change
        )
        assert response.status_code == 409
    empty = await accounts.client.patch(f"/api/v1/users/{me['id']}", headers=bearer(token), json={})
    assert empty.status_code == 422


async def test_only_admins_manage_users(accounts: Accounts) -> None:
    token = await accounts.token(Role.operator)
    response = await accounts.client.get("/api/v1/users", headers=bearer(token))
    assert response.status_code == 403


async def test_forged_cursors_are_422_not_500(accounts: Accounts) -> None:
    _, token = await _admin(accounts)
    for member in ([1], {"a": 1}, 5, "nul\u0000", None):
        cursor = encode_cursor({"email": member})  # type: ignore[dict-item]
        response = await accounts.client.get(
            f"/api/v1/users?cursor={cursor}", headers=bearer(token)
        )
        assert response.status_code == 422, member
    for member in (1, [], "not-a-uuid"):
        cursor = encode_cursor({"id": member})  # type: ignore[dict-item]
        response = await accounts.client.get(
            f"/api/v1/auth/api-keys?cursor={cursor}", headers=bearer(token)
        )
        assert response.status_code == 422, member


async def test_a_demoted_admins_api_keys_are_revoked(accounts: Accounts) -> None:
    tenant, first_admin = await _admin(accounts)
    second_email = await accounts.user(Role.admin, tenant)
    second = await accounts.login(second_email)
    key = (
        await accounts.client.post(
            "/api/v1/auth/api-keys",
            headers=bearer(second["token"]),
            json={"name": "ops", "role": "admin"},
        )
    ).json()["key"]
    assert (await accounts.client.get("/api/v1/users", headers=bearer(key))).status_code == 200
    await accounts.client.patch(
        f"/api/v1/users/{second['user']['id']}",
        headers=bearer(first_admin),
        json={"role": "operator"},
    )
    await asyncio.sleep(STANDING_TTL + 0.05)
    assert (await accounts.client.get("/api/v1/users", headers=bearer(key))).status_code == 401
