"""Access tokens: a token verified once is remembered, but never past its expiry."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from workflow_engine.auth.permissions import Role
from workflow_engine.auth.tokens import InvalidTokenError, TokenIssuer


def _issuer(lifetime: float, secret: str = "unit-test-secret-of-at-least-32-bytes!") -> TokenIssuer:
    return TokenIssuer(secret, issuer="we", audience="api",
                       lifetime=timedelta(seconds=lifetime), leeway=timedelta())  # fmt: skip


def _token(issuer: TokenIssuer) -> str:
    return issuer.issue(
        user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role=Role.viewer,
        session_id=uuid.uuid4(), generation=0,
    ).token  # fmt: skip


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    issuer = _issuer(1)
    token = _token(issuer)
    assert issuer.verify(token) == issuer.verify(token)  # the second answer from memory
    time.sleep(1.05)
    with pytest.raises(InvalidTokenError, match="the token has expired"):
        issuer.verify(token)
    with pytest.raises(InvalidTokenError, match="the token has expired"):
        issuer.verify(token)  # forgotten, and checked afresh


def test_a_tampered_token_is_never_taken_for_a_remembered_one() -> None:
    issuer = _issuer(60)
    token = _token(issuer)
    issuer.verify(token)
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidTokenError, match="the token is not valid"):
        issuer.verify(f"{header}.{payload}.{signature[:-2]}AA")
    with pytest.raises(InvalidTokenError, match="the token is not valid"):
        _issuer(60, secret="another-secret-of-at-least-32-bytes!!!").verify(token)
