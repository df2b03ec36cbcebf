"""Login, refresh, logout, token checks and the role matrix, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.conftest import TEST_JWT_SECRET, Accounts, build_app, running
from workflow_engine.auth.permissions import Permission, Role, allows
from workflow_engine.auth.service import STANDING_TTL
from workflow_engine.auth.tokens import TokenIssuer
from workflow_engine.db.tables import events, users


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_answers_in_the_seed_shape(accounts: Accounts) -> None:
    email = await accounts.user(Role.operator)
    body = await accounts.login(email)
    assert body["token"] == body["access_token"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == 604800
    assert body["user"]["email"] == email
    assert body["user"]["role"] == "operator"
    uuid.UUID(body["user"]["id"])
    uuid.UUID(body["user"]["tenant_id"])
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert set(claims) == {
        "sub",
        "tid",
        "role",
        "sid",
        "gen",
        "jti",
        "iat",
        "nbf",
        "exp",
        "iss",
        "aud",
    }


async def test_username_is_a_synonym_of_email(accounts: Accounts) -> None:
    email = await accounts.user(Role.viewer)
    response = await accounts.client.post(
        "/api/v1/auth/login", json={"username": email.upper(), "password": accounts.password}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"password": "x"}, {"email": "a@b.c"}, {"email": "a@b.c", "password": "x", "role": "admin"}],
)
async def test_incomplete_or_extra_login_fields_are_422(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_email_and_wrong_password_get_the_same_401(accounts: Accounts) -> None:
    email = await accounts.user(Role.viewer)
    wrong = await accounts.client.post(
        "/api/v1/auth/login", json={"email": email, "password": "not the password"}
    )
    unknown = await accounts.client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": "whatever"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "invalid email or password"
    async with accounts.db.read() as conn:
        failures = (
            await conn.execute(select(events.c.data).where(events.c.event_type == "LoginFailed"))
        ).scalars()
        reasons = sorted(data["reason"] for data in failures)
    assert "wrong_password" in reasons
    assert "unknown_email" in reasons


async def test_me_and_logout_refuse_the_token_at_once(accounts: Accounts) -> None:
    email = await accounts.user(Role.viewer)
    token = (await accounts.login(email))["token"]
    me = await accounts.client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.json()["email"] == email
    logout = await accounts.client.post("/api/v1/auth/logout", headers=bearer(token))
    assert logout.status_code == 204
    after = await accounts.client.get("/api/v1/auth/me", headers=bearer(token))
    assert after.status_code == 401
    assert after.json()["detail"] == "the token has been revoked"
    assert 'error="invalid_token"' in after.headers["www-authenticate"]


async def test_logout_also_ends_the_refresh_token(accounts: Accounts) -> None:
    session = await accounts.login(await accounts.user(Role.viewer))
    await accounts.client.post("/api/v1/auth/logout", headers=bearer(session["token"]))
    refreshed = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(accounts: Accounts) -> None:
    session = await accounts.login(await accounts.user(Role.operator))
    first = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != session["refresh_token"]
    assert rotated["token"] != session["token"]
    me = await accounts.client.get("/api/v1/auth/me", headers=bearer(rotated["token"]))
    assert me.status_code == 200

    replay = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert replay.status_code == 401
    assert "already been used" in replay.json()["detail"]
    # The thief's replay also ends the legitimate holder's newer refresh token.
    descendant = await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert descendant.status_code == 401
    async with accounts.db.read() as conn:
        query = (
            select(events.c.metadata)
            .where(
                events.c.event_type == "RefreshTokenReused",
                events.c.aggregate_id == session["user"]["id"],
            )
            .order_by(events.c.position)
        )
        reused = (await conn.execute(query)).scalars().all()
    assert len(reused) == 2  # the replay, then the descendant refused after the revocation
    assert reused[0]["correlation_id"] == replay.headers["x-correlation-id"]


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
    assert response.status_code == 401


def _forge(claims: dict[str, Any], key: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, default=str).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def _attack_tokens(accounts: Accounts) -> dict[str, str]:
    """Tokens a client might present that must all be refused with 401."""
    good = (await accounts.login(await accounts.user(Role.viewer)))["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    header, _payload, signature = good.split(".")
    tampered_claims = dict(claims, role="admin")
    tampered_payload = (
        base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=").decode()
    )
    expired = TokenIssuer(
        TEST_JWT_SECRET,
        issuer="workflow-engine",
        audience="workflow-engine-api",
        lifetime=timedelta(seconds=-120),
        leeway=timedelta(0),
    ).issue(
        user_id=uuid.UUID(claims["sub"]),
        tenant_id=uuid.UUID(claims["tid"]),
        role=Role.viewer,
        session_id=uuid.UUID(claims["sid"]),
        generation=claims["gen"],
    )
    revoked = (await accounts.login(await accounts.user(Role.viewer)))["token"]
    await accounts.client.post("/api/v1/auth/logout", headers=bearer(revoked))
    without_jti = {k: v for k, v in claims.items() if k != "jti"}
    return {
        "expired": expired.token,
        "other key": _forge(claims, key="another-secret-that-is-long-enough-to-sign"),
        "alg none": _unsigned(claims),
        "tampered claim": f"{header}.{tampered_payload}.{signature}",
        "revoked": revoked,
        "missing claim": _forge(without_jti),
        "wrong audience": _forge(dict(claims, aud="someone-else")),
        "absurd expiry": _forge(dict(claims, exp=2**63)),
        "absurd float expiry": _forge(dict(claims, exp=1e308)),
        "garbage": "not-a-jwt",
    }


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, Permission | None]]:
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            scopes = [s for req in operation.get("security", []) for ss in req.values() for s in ss]
            found.append((method.upper(), path, Permission(scopes[0]) if scopes else None))
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_every_route_answers_as_the_permission_matrix_says(
    app: FastAPI, accounts: Accounts
) -> None:
    client = accounts.client
    spec = (await client.get("/api/v1/openapi.json")).json()
    operations = _operations(spec)
    streaming = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
    }
    assert streaming == {
        ("GET", "/api/v1/events/stream"),
        ("GET", "/api/v1/workflows/{workflow_id}/logs"),  # with follow=true
    }
    secured = [op for op in operations if op[2] is not None]
    assert secured, "no secured routes found in the spec"
    attacks = await _attack_tokens(accounts)
    for method, path, permission in operations:
        url = _concrete(path)
        anonymous = await client.request(method, url, json={} if method != "GET" else None)
        if permission is None:
            assert anonymous.status_code != 401, (method, path)
            continue
        assert anonymous.status_code == 401, (method, path)
        for name, token in attacks.items():
            response = await client.request(method, url, headers=bearer(token))
            assert response.status_code == 401, (method, path, name, response.text)
        for role in Role:
            if allows(role, permission) and (method, path) in streaming:
                continue  # an endless stream: an in-process client would wait for ever (e2e)
            token = await accounts.token(role)  # fresh: logout would spend a shared one
            response = await client.request(method, url, headers=bearer(token), json={})
            if allows(role, permission):
                assert response.status_code not in (401, 403), (method, path, role)
            else:
                assert response.status_code == 403, (method, path, role)
                assert response.headers["content-type"] == "application/problem+json"


async def test_logout_in_one_process_is_refused_by_another_within_a_second(
    database_url: str, tmp_path: Path
) -> None:
    first = build_app(database_url, tmp_path / "a")
    second = build_app(database_url, tmp_path / "b")
    async with running(first) as a, running(second) as b:
        accounts = Accounts(first, a)
        token = (await accounts.login(await accounts.user(Role.operator)))["token"]
        assert (await b.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
        assert (await a.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
        await asyncio.sleep(STANDING_TTL + 0.05)
        refused = await b.get("/api/v1/auth/me", headers=bearer(token))
        assert refused.status_code == 401


async def test_no_secret_reaches_the_logs_or_the_event_log(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    email = await accounts.user(Role.admin)
    session = await accounts.login(email)
    await accounts.client.post(
        "/api/v1/auth/login", json={"email": email, "password": "a wrong password 123"}
    )
    rotated = (
        await accounts.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
    ).json()
    await accounts.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    await accounts.client.get("/api/v1/auth/me", headers=bearer(rotated["token"]))
    await accounts.client.post("/api/v1/auth/logout", headers=bearer(rotated["token"]))
    secrets = [
        accounts.password,
        "a wrong password 123",
        session["token"],
        session["refresh_token"],
        rotated["token"],
        rotated["refresh_token"],
        "$argon2id$",
    ]
    logged = "\n".join(str(record.msg) for record in caplog.records)
    assert "request" in logged  # the access lines were captured
    async with accounts.db.read() as conn:
        stored = "\n".join(
            json.dumps([row.data, row.metadata])
            for row in await conn.execute(select(events.c.data, events.c.metadata))
        )
    for secret in secrets:
        assert secret not in logged, secret
        assert secret not in stored, secret


async def test_login_upgrades_a_hash_made_with_older_parameters(
    database_url: str, tmp_path: Path
) -> None:
    cheap = build_app(database_url, tmp_path / "old")
    async with running(cheap) as client:
        accounts = Accounts(cheap, client)
        email = await accounts.user(Role.viewer)
    stronger = build_app(database_url, tmp_path / "new", PASSWORD_HASH_TIME_COST="2")
    async with running(stronger) as client:
        accounts = Accounts(stronger, client)
        await accounts.login(email)
        async with accounts.db.read() as conn:
            stored = (
                await conn.execute(select(users.c.password_hash).where(users.c.email == email))
            ).scalar_one()
    assert ",t=2," in stored


async def test_only_the_documented_routes_answer_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    public = {
        (method, path) for method, path, permission in _operations(spec) if permission is None
    }
    assert public == {
        ("GET", "/health"),
        ("GET", "/health/detailed"),
        ("GET", "/api/v1/uptime"),
        ("GET", "/metrics"),  # for Prometheus; METRICS_TOKEN closes it
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/api/v1/embedder/orders"),  # the test's own embedding router
        ("GET", "/api/v1/embedder/crash"),
    }


async def test_logout_ends_every_access_token_of_the_session(accounts: Accounts) -> None:
    session = await accounts.login(await accounts.user(Role.viewer))
    rotated = (
        await accounts.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
    ).json()
    await accounts.client.post("/api/v1/auth/logout", headers=bearer(rotated["token"]))
    await asyncio.sleep(STANDING_TTL + 0.05)
    older = await accounts.client.get("/api/v1/auth/me", headers=bearer(session["token"]))
    assert older.status_code == 401  # issued earlier in the same session


async def test_concurrent_logouts_with_one_token_never_fail(accounts: Accounts) -> None:
    token = (await accounts.login(await accounts.user(Role.viewer)))["token"]
    responses = await asyncio.gather(
        *(accounts.client.post("/api/v1/auth/logout", headers=bearer(token)) for _ in range(5))
    )
    assert {r.status_code for r in responses} <= {204, 401}
    assert 204 in {r.status_code for r in responses}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a\\u0000b@example.com", "password": "x"}',
        b'{"email": "a@example.com", "password": "nul\\u0000"}',
        b'{"username": "\\ud800@example.com", "password": "x"}',
    ],
)
async def test_unstorable_text_in_a_login_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
