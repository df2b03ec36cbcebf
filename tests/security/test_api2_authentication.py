"""API2, broken authentication: every credential an attacker can make or replay is a 401.

Forged tokens are built the way an attacker would (a header and claims of their choosing, a
signature with a key they have or none); the signing secret of the test app is used only where
the point is what the server does with claims it signed itself (an absurd `exp`, a demoted or
deactivated user).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import own_database
from tests.integration.conftest import TEST_JWT_SECRET, Accounts, running
from tests.security.conftest import Tenant, bearer, build_app
from workflow_engine.auth.permissions import Role

ME = "/api/v1/auth/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT with any header, any claims, and an HMAC-SHA256 signature with `key` (none
    without one): what PyJWT itself refuses to make for some of these."""
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    ).encode()
    signature = b"" if key is None else hmac.new(key, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + _b64(signature)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture(scope="module")
def real_claims(alice: Tenant) -> dict[str, Any]:
    return claims_of(alice.tokens[Role.admin])


async def test_no_credential_is_401(client: httpx.AsyncClient) -> None:
    assert_refused(await client.get(ME))
    assert_refused(await client.get(ME, headers={"Authorization": "Bearer "}))
    assert_refused(await client.get(ME, headers={"Authorization": "Basic YWRtaW46YWRtaW4="}))


@pytest.mark.parametrize(
    "credential",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9..",
        "e30.e30.",
        "x" * 8000,
        "wek_",
        "wek_abc_def",
        "wek_" + "A" * 200,
        "\u00e9t\u00e9",
    ],
)
async def test_malformed_credentials_are_401(client: httpx.AsyncClient, credential: str) -> None:
    raw = credential.encode()  # as bytes: a header may carry any octet, not only ASCII
    assert_refused(await client.get(ME, headers={b"Authorization": b"Bearer " + raw}))
    assert_refused(await client.get(ME, headers={b"X-API-Key": raw}))


async def test_a_token_signed_with_another_key_is_401(
    client: httpx.AsyncClient, real_claims: dict[str, Any]
) -> None:
    token = forge({"alg": "HS256", "typ": "JWT"}, real_claims, b"not-the-server-secret" * 2)
    assert_refused(await client.get(ME, headers=bearer(token)))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_an_unsigned_token_is_401(
    client: httpx.AsyncClient, real_claims: dict[str, Any], alg: str
) -> None:
    token = forge({"alg": alg, "typ": "JWT"}, real_claims, None)
    assert_refused(await client.get(ME, headers=bearer(token)))


async def test_a_tampered_role_is_401(client: httpx.AsyncClient, alice: Tenant) -> None:
    header, payload, signature = alice.tokens[Role.viewer].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert_refused(await client.get("/api/v1/users", headers=bearer(tampered)))


async def refused_soon(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    """A change that ends a credential reaches every process's memory of it within a second
    (docs/security.md); until then the credential may still be answered from that memory."""
    async with asyncio.timeout(10):
        while (response := await client.get(path, headers=headers)).status_code != 401:
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.05)
    assert_refused(response)


def _signed(claims: dict[str, Any], **changes: Any) -> str:
    changed = {**claims, **changes}
    changed = {k: v for k, v in changed.items() if v is not ...}
    return forge({"alg": "HS256", "typ": "JWT"}, changed, TEST_JWT_SECRET.encode())


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 1_000_000},  # long expired
        {"exp": ...},  # no expiry at all
        {"nbf": 4_000_000_000},  # not valid until 2096
        {"iat": 4_000_000_000, "nbf": 4_000_000_000},
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"iss": ...},
        {"aud": ...},
        {"sub": ...},
        {"tid": ...},
        {"gen": ...},
        {"exp": 2**63},
        {"exp": 2**64 + 1},
        {"exp": 1e308},
        {"exp": -1e308},
        {"exp": "never"},
        {"exp": [1]},
        {"nbf": 1e308, "exp": 1e308},
        {"iat": 1e308},
        {"gen": 2**70},
        {"gen": 1e308},
        {"gen": None},
        {"sub": "not-a-uuid"},
        {"sub": 12},
        {"tid": str(uuid.UUID(int=0))},
        {"tid": str(uuid.uuid4())},
        {"sid": "x" * 5000},
        {"role": "superuser"},
        {"role": None},
        {"jti": {"nested": True}},
    ],
    ids=lambda changes: ",".join(f"{k}={str(v)[:12]}" for k, v in changes.items()),
)
async def test_tokens_with_bad_claims_are_401(
    client: httpx.AsyncClient, real_claims: dict[str, Any], changes: dict[str, Any]
) -> None:
    token = _signed(real_claims, **changes)
    assert_refused(await client.get(ME, headers=bearer(token)))
    # Also where the rate limiter looks at it first, and on a route with a body.
    assert_refused(await client.post("/api/v1/workflows/trigger", headers=bearer(token), json={}))


async def test_the_genuine_token_still_works(
    client: httpx.AsyncClient, real_claims: dict[str, Any]
) -> None:
    """The forgeries above fail for their changes, not for how they are made."""
    response = await client.get(ME, headers=bearer(_signed(real_claims)))
    assert response.status_code == 200, response.text


async def test_a_deactivated_users_token_and_keys_are_401(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    email = await accounts.user(Role.admin, alice.name)
    login = await accounts.login(email)
    token = login["token"]
    key = await client.post(
        "/api/v1/auth/api-keys", headers=bearer(token), json={"name": "k", "role": "viewer"}
    )
    assert key.status_code == 201
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    changed = await client.patch(
        f"/api/v1/users/{login['user']['id']}", headers=alice.headers(), json={"is_active": False}
    )
    assert changed.status_code == 200, changed.text
    await refused_soon(client, ME, bearer(token))
    await refused_soon(client, ME, {"X-API-Key": key.json()["key"]})
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 401
    again = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": accounts.password}
    )
    assert again.status_code == 401
    assert again.json()["detail"] == "invalid email or password"


async def test_a_demoted_users_old_token_is_401(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    login = await accounts.login(await accounts.user(Role.admin, alice.name))
    changed = await client.patch(
        f"/api/v1/users/{login['user']['id']}", headers=alice.headers(), json={"role": "viewer"}
    )
    assert changed.status_code == 200
    await refused_soon(client, "/api/v1/users", bearer(login["token"]))


async def test_a_revoked_api_key_is_401(client: httpx.AsyncClient, alice: Tenant) -> None:
    made = await client.post(
        "/api/v1/auth/api-keys",
        headers=alice.headers(),
        json={"name": "soon-gone", "role": "admin"},
    )
    key = made.json()["key"]
    assert (await client.get(ME, headers={"X-API-Key": key})).status_code == 200
    deleted = await client.delete(f"/api/v1/auth/api-keys/{made.json()['id']}",
                                  headers=alice.headers())  # fmt: skip
    assert deleted.status_code == 204
    await refused_soon(client, ME, {"X-API-Key": key})
    assert_refused(await client.get(ME, headers=bearer(key)))
    # A key with its secret changed, or its prefix, is no key.
    # `wek_<id>_<secret>`; the secret itself may hold underscores.
    marker, key_id, secret = key.split("_", 2)
    changed = f"{marker}_{key_id}_{secret[1:]}{'A' if secret[0] != 'A' else 'B'}"
    assert_refused(await client.get(ME, headers={"X-API-Key": changed}))


async def test_logout_ends_the_token(client: httpx.AsyncClient, accounts: Accounts,
                                     alice: Tenant) -> None:  # fmt: skip
    login = await accounts.login(await accounts.user(Role.viewer, alice.name))
    assert (
        await client.post("/api/v1/auth/logout", headers=bearer(login["token"]))
    ).status_code == 204
    await refused_soon(client, ME, bearer(login["token"]))
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_a_reused_refresh_token_ends_the_whole_session(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    login = await accounts.login(await accounts.user(Role.operator, alice.name))
    first = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert first.status_code == 200
    # The thief replays the spent token: refused, and the owner's newer pair dies with it.
    replay = await client.post("/api/v1/auth/refresh",
                               json={"refresh_token": login["refresh_token"]})  # fmt: skip
    assert replay.status_code == 401
    newer = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert newer.status_code == 401
    await refused_soon(client, ME, bearer(first.json()["token"]))


@pytest.mark.parametrize("refresh_token", ["", "x", "A" * 512, "' OR 1=1 --"])
async def test_unknown_refresh_tokens_are_refused(
    client: httpx.AsyncClient, refresh_token: str
) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code in (401, 422), response.text


async def test_login_is_throttled_for_real_and_unknown_emails(
    client: httpx.AsyncClient, accounts: Accounts, alice: Tenant
) -> None:
    real = await accounts.user(Role.viewer, alice.name)
    for email in (real, f"nobody-{uuid.uuid4().hex[:6]}@example.com"):
        statuses = []
        for _ in range(7):
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": "wrong guess 123"}
            )
            statuses.append(response.status_code)
        assert statuses[:5] == [401] * 5, statuses
        assert statuses[5:] == [429, 429], statuses
        assert int(response.headers["retry-after"]) >= 1
    # While throttled, even the right password is refused: guessing gains nothing.
    right = await client.post(
        "/api/v1/auth/login", json={"email": real, "password": accounts.password}
    )
    assert right.status_code == 429


# --- algorithm confusion on a server that signs with RS256 ------------------------------------


@pytest.fixture(scope="module")
async def rs256(
    backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Accounts, bytes]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory: Path = tmp_path_factory.mktemp("rs256")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (directory / "key.pem").write_bytes(pem)
    (directory / "key.pem").chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    async with own_database(backend_url, directory) as url:
        app = build_app(url, directory, JWT_ALGORITHM="RS256",
                        JWT_PRIVATE_KEY_FILE=str(directory / "key.pem"))  # fmt: skip
        async with running(app) as http:
            yield http, Accounts(app, http), public


async def test_hs256_signed_with_the_public_key_is_401(
    rs256: tuple[httpx.AsyncClient, Accounts, bytes],
) -> None:
    client, accounts, public = rs256
    token = await accounts.token(Role.admin)
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    claims = claims_of(token)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"]
    assert all("d" not in key and "p" not in key for key in jwks["keys"])
    for header in ({"alg": "HS256", "typ": "JWT"},
                   {"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}):  # fmt: skip
        for secret in (public, public.strip(), json.dumps(jwks["keys"][0]).encode()):
            assert_refused(await client.get(ME, headers=bearer(forge(header, claims, secret))))
    assert_refused(await client.get(ME, headers=bearer(forge({"alg": "none"}, claims, None))))
    # And the other way round: the HS256 test secret means nothing to this server.
    assert_refused(await client.get(ME, headers=bearer(_signed(claims, iat=time.time()))))
