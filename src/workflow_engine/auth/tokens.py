"""Access tokens: short-lived JWTs, signed with JWT_SECRET (HS256) or a key pair (RS256/ES256).

Verification pins the algorithm, requires every claim, checks issuer and audience and allows a
small clock skew. A token that passes is still checked against revocations by `AuthService`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from workflow_engine.auth.permissions import Role
from workflow_engine.auth.signing_keys import SigningKey

REQUIRED_CLAIMS = ["sub", "tid", "role", "sid", "gen", "jti", "iat", "nbf", "exp", "iss", "aud"]


class InvalidTokenError(Exception):
    """The token is not one we issued, or no longer valid. The message is safe to show."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    session_id: uuid.UUID  # the refresh-token family this token was issued with
    generation: int  # the user's token generation when it was issued
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: AccessClaims


VERIFIED_LIMIT = 10_000


class TokenIssuer:
    def __init__(
        self,
        key: SigningKey | str,
        *,
        issuer: str,
        audience: str,
        lifetime: timedelta,
        leeway: timedelta,
    ) -> None:
        self.key = SigningKey.hmac(key) if isinstance(key, str) else key
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.leeway = leeway
        self._verified: dict[str, AccessClaims] = {}

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        role: Role,
        session_id: uuid.UUID,
        generation: int,
    ) -> IssuedToken:
        now = datetime.now(UTC)
        expires = int((now + self.lifetime).timestamp())
        claims = AccessClaims(
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            session_id=session_id,
            generation=generation,
            token_id=secrets.token_urlsafe(16),
            issued_at=now,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
        payload = {
            "sub": str(user_id),
            "tid": str(tenant_id),
            "role": role.value,
            "sid": str(session_id),
            "gen": generation,
            "jti": claims.token_id,
            "iat": now.timestamp(),
            "nbf": int(now.timestamp()),
            "exp": expires,
            "iss": self.issuer,
            "aud": self.audience,
        }
        headers = {"kid": self.key.kid} if self.key.kid else None
        token = jwt.encode(payload, self.key.signing, algorithm=self.key.algorithm, headers=headers)
        return IssuedToken(token, claims)

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, or `InvalidTokenError`. A token is checked (signature, issuer,
        audience, claims) once and then remembered until it expires: the answer depends only
        on the token and the clock, and a busy client presents the same token all day."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check(token)
            if len(self._verified) >= VERIFIED_LIMIT:
                self._verified.clear()  # bounded memory; what is in use comes back at once
            self._verified[token] = claims
        if datetime.now(UTC) >= claims.expires_at + self.leeway:
            self._verified.pop(token, None)
            raise InvalidTokenError("the token has expired")
        return claims

    def _check(self, token: str) -> AccessClaims:
        try:
            # One algorithm, ours: `none` and HMAC-with-the-public-key confusions fail here.
            payload = jwt.decode(
                token,
                self.key.verifying,
                algorithms=[self.key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token has expired") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError("the token is not valid") from None
        try:
            return AccessClaims(
                user_id=uuid.UUID(payload["sub"]),
                tenant_id=uuid.UUID(payload["tid"]),
                role=Role(payload["role"]),
                session_id=uuid.UUID(payload["sid"]),
                generation=int(payload["gen"]),
                token_id=str(payload["jti"]),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (ValueError, TypeError, OverflowError, OSError):  # a time no datetime holds
            raise InvalidTokenError("the token is not valid") from None
