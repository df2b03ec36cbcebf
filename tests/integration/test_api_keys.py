"""API keys: shown once, checked by digest, scoped to tenant and role, revocable."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth import api_keys
from workflow_engine.auth.accounts import CLI_ORIGIN
from workflow_engine.auth.permissions import Role
from workflow_engine.auth.service import STANDING_TTL
from workflow_engine.db.tables import api_keys as api_keys_table
from workflow_engine.db.tables import events


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _issue(accounts: Accounts, role: str = "service") -> tuple[str, dict[str, object]]:
    tenant = await accounts.tenant()
    admin = await accounts.token(Role.admin, tenant)
    created = await accounts.client.post(
        "/api/v1/auth/api-keys", headers=bearer(admin), json={"name": "crm-sync", "role": role}
    )
    assert created.status_code == 201, created.text
    return admin, created.json()


async def test_key_is_shown_once_and_works_as_bearer_or_header(accounts: Accounts) -> None:
    admin, created = await _issue(accounts)
    key = str(created["key"])
    assert key.startswith("wek_")
    listed = (await accounts.client.get("/api/v1/auth/api-keys", headers=bearer(admin))).json()
    assert [k["id"] for k in listed["items"]] == [created["id"]]
    assert "key" not in listed["items"][0]
    assert key not in str(listed)
    for headers in (bearer(key), {"X-API-Key": key}):
        me = await accounts.client.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["kind"] == "api_key"
        assert me.json()["name"] == "crm-sync"
        assert me.json()["role"] == "service"
    async with accounts.db.read() as conn:
        row = (
            await conn.execute(
                select(api_keys_table.c.key_hash, api_keys_table.c.last_used_at).where(
                    api_keys_table.c.id == uuid.UUID(str(created["id"]))
                )
            )
        ).one()
    assert row.last_used_at is not None
    assert key not in row.key_hash


async def test_a_key_holds_only_its_roles_permissions(accounts: Accounts) -> None:
    _, created = await _issue(accounts, role="service")
    response = await accounts.client.get("/api/v1/users", headers=bearer(str(created["key"])))
    assert response.status_code == 403
    logout = await accounts.client.post("/api/v1/auth/logout", headers=bearer(str(created["key"])))
    assert logout.status_code == 422
    assert "revoke it with DELETE" in logout.json()["detail"]


async def test_wrong_expired_and_revoked_keys_are_refused(
    accounts: Accounts, database_url: str, tmp_path: Path
) -> None:
    admin, created = await _issue(accounts)
    key = str(created["key"])
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for bad in (tampered, "wek_000000000000_" + "x" * 43, "wek_short", "wek_"):
        response = await accounts.client.get("/api/v1/auth/me", headers=bearer(bad))
        assert response.status_code == 401, bad

    me = await accounts.client.get("/api/v1/auth/me", headers=bearer(key))
    tenant_id = uuid.UUID(me.json()["tenant_id"])
    _, expired = await api_keys.create_api_key(
        accounts.db, tenant_id=tenant_id, name="old", role=Role.viewer,
        expires_at=datetime.now(UTC) - timedelta(seconds=1), actor="test", origin=CLI_ORIGIN,
    )  # fmt: skip
    assert (
        await accounts.client.get("/api/v1/auth/me", headers=bearer(expired))
    ).status_code == 401

    other = build_app(database_url, tmp_path / "other")
    async with running(other) as second:
        assert (await second.get("/api/v1/auth/me", headers=bearer(key))).status_code == 200
        revoked = await accounts.client.delete(
            f"/api/v1/auth/api-keys/{created['id']}", headers=bearer(admin)
        )
        assert revoked.status_code == 204
        await asyncio.sleep(STANDING_TTL + 0.05)
        assert (await second.get("/api/v1/auth/me", headers=bearer(key))).status_code == 401


async def test_another_tenants_keys_are_not_found(accounts: Accounts) -> None:
    _, theirs = await _issue(accounts)
    mine, _ = await _issue(accounts)
    deleted = await accounts.client.delete(
        f"/api/v1/auth/api-keys/{theirs['id']}", headers=bearer(mine)
    )
    assert deleted.status_code == 404
    listed = (await accounts.client.get("/api/v1/auth/api-keys", headers=bearer(mine))).json()
    assert theirs["id"] not in [k["id"] for k in listed["items"]]
    still = await accounts.client.get("/api/v1/auth/me", headers=bearer(str(theirs["key"])))
    assert still.status_code == 200


async def test_key_creation_is_audited_without_the_key(accounts: Accounts) -> None:
    _, created = await _issue(accounts)
    async with accounts.db.read() as conn:
        rows = (
            await conn.execute(
                select(events.c.event_type, events.c.data).where(
                    events.c.aggregate_id == str(created["id"])
                )
            )
        ).all()
    assert [r.event_type for r in rows] == ["ApiKeyCreated"]
    assert str(created["key"]) not in str(rows)
