"""Asymmetric access tokens (RS256, ES256) and the JWKS that lets others verify them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.auth.signing_keys import SigningKeyError, load_private_key
from workflow_engine.config import ConfigError, load_settings


def _write_key(tmp_path: Path, algorithm: str) -> Path:
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = tmp_path / f"{algorithm}.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_tokens_verify_with_the_published_key_and_nothing_else(
    database_url: str, tmp_path: Path, algorithm: str
) -> None:
    key_file = _write_key(tmp_path, algorithm)
    app = build_app(
        database_url, tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=str(key_file)
    )
    async with running(app) as client:
        accounts = Accounts(app, client)
        token = await accounts.token(Role.viewer)
        header = jwt.get_unverified_header(token)
        assert header["alg"] == algorithm
        published = (await client.get("/.well-known/jwks.json")).json()["keys"]
        assert [k["kid"] for k in published] == [header["kid"]]
        public_key = jwt.PyJWK(published[0]).key
        claims = jwt.decode(
            token, public_key, algorithms=[algorithm], audience="workflow-engine-api"
        )
        assert claims["role"] == "viewer"
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200

        # Algorithm confusion: an HS256 token "signed" with the public key must be refused.
        pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        forged = _hs256_with_public_key(claims, pem)
        refused = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401
        assert "private" not in str(published)
        assert all("d" not in k for k in published)  # no private member published


def _hs256_with_public_key(claims: dict[str, object], pem: bytes) -> str:
    def part(data: dict[str, object]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(
        hmac.new(pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


async def test_hs256_publishes_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/.well-known/jwks.json")).json() == {"keys": []}


def test_asymmetric_algorithm_needs_a_key_file() -> None:
    with pytest.raises(ConfigError, match="JWT_ALGORITHM=RS256 needs JWT_PRIVATE_KEY_FILE"):
        load_settings({"JWT_ALGORITHM": "RS256"})


def test_unusable_key_files_are_named_with_the_reason(tmp_path: Path) -> None:
    rsa_file = _write_key(tmp_path, "RS256")
    with pytest.raises(SigningKeyError, match="ES256 needs an EC key on the P-256 curve"):
        load_private_key("ES256", rsa_file)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM private key"):
        load_private_key("RS256", garbage)
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_private_key("RS256", tmp_path / "missing.pem")
