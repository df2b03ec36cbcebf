"""Login, refresh, logout and the check every authenticated request goes through.

Guarantees:

- A wrong password and an unknown email cost the same work (a dummy hash is checked) and get
  the same answer, and both count towards the login backoff (`login_throttle`).
- A refresh token is used at most once. Presenting a used (or revoked) one revokes its whole
  family — every token descended from the same login — and records a security event; the
  revocation commits even though the request is refused.
- A logged-out access token, any token of a deactivated user, and a revoked API key are
  refused by every process within `STANDING_TTL` (one second). Each process remembers what the
  database said about a credential until the credential epoch moves (`credential_watch.py`),
  so a request with a known credential costs no query; `recheck` answers for a credential
  still in use (an open stream) after such a move.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth import api_keys, login_throttle, store
from workflow_engine.auth.audit import (
    AUDIT_AGGREGATE,
    SYSTEM_TENANT,
    RequestOrigin,
    login_subject,
    record,
    record_user_event,
)
from workflow_engine.auth.credential_watch import CredentialWatch
from workflow_engine.auth.login_throttle import ThrottlePolicy
from workflow_engine.auth.passwords import Passwords
from workflow_engine.auth.principal import Principal, UserSession
from workflow_engine.auth.standing_cache import StandingCache
from workflow_engine.auth.tokens import (
    InvalidTokenError,
    IssuedToken,
    TokenIssuer,
)
from workflow_engine.db import Database
from workflow_engine.errors import InvalidInput, TooManyRequests, Unauthorized
from workflow_engine.observability import metrics

STANDING_TTL = 1.0
_BAD_CREDENTIALS = "invalid email or password"


@dataclass(frozen=True)
class _KeyLookup:
    found: api_keys.ApiKey | None  # None: no such key (remembered too)


@dataclass(frozen=True)
class Session:
    """What login and refresh hand out."""

    access: IssuedToken
    refresh_token: str
    refresh_expires_at: datetime
    user: store.User


class AuthService:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        tokens: TokenIssuer,
        *,
        refresh_lifetime: timedelta,
        throttle: ThrottlePolicy,
        watch: CredentialWatch,
    ) -> None:
        self.db = db
        self.throttle = throttle
        self.passwords = passwords
        self.tokens = tokens
        self.refresh_lifetime = refresh_lifetime
        self.watch = watch
        # Keyed by every claim the standing is read for, not by `jti` alone: a token that
        # reuses a known `jti` with another tenant or user must be looked up, not answered
        # with the standing of the token it copied.
        self._standing: StandingCache[_StandingKey, store.TokenStanding] = StandingCache(watch)
        self._keys: StandingCache[str, _KeyLookup] = StandingCache(watch)
        self._key_ids: StandingCache[uuid.UUID, _KeyLookup] = StandingCache(watch)

    # --- login --------------------------------------------------------------------------

    async def login(self, email: str, password: str, origin: RequestOrigin) -> Session:
        email = store.normalise_email(email)
        try:
            async with self.db.transaction() as conn:
                await login_throttle.admit(
                    conn, email, origin.client_address, datetime.now(UTC), self.throttle
                )
        except login_throttle.LoginThrottled as exc:
            metrics.logins.labels("throttled").inc()
            raise TooManyRequests(
                "too many failed logins for this account; try again later",
                retry_after=exc.wait.total_seconds(),
            ) from None
        async with self.db.read() as conn:
            user = await store.find_user_by_email(conn, email)
        matched = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not matched or not user.is_active:
            await self._record_login_failure(email, user, origin)
            metrics.logins.labels("failed").inc()
            raise Unauthorized(_BAD_CREDENTIALS)
        new_hash = (
            await self.passwords.hash(password)
            if self.passwords.needs_rehash(user.password_hash)
            else None
        )
        async with self.db.transaction() as conn:
            # Issue from the row as it is now, held until commit: a demotion or deactivation
            # that raced with the password check either shows here or waits for this commit
            # and then outdates the token's generation.
            current = await store.lock_user(conn, user.id)
            if current is None or not current.is_active:
                raise Unauthorized(_BAD_CREDENTIALS)
            await login_throttle.forgive(conn, email, origin.client_address)
            if new_hash is not None and current.password_hash == user.password_hash:
                await store.set_password_hash(conn, user.id, new_hash)
            session = await self._open_session(conn, current, uuid.uuid4())
            await record_user_event(
                conn,
                tenant_id=current.tenant_id,
                user_id=current.id,
                event_type="LoginSucceeded",
                actor=f"user:{current.id}",
                origin=origin,
                data={"session_id": str(session.access.claims.session_id)},
            )
        metrics.logins.labels("succeeded").inc()
        return session

    async def _record_login_failure(
        self, email: str, user: store.User | None, origin: RequestOrigin
    ) -> None:
        async with self.db.transaction() as conn:
            if user is None:
                await record(
                    conn,
                    tenant_id=SYSTEM_TENANT,
                    aggregate_type=AUDIT_AGGREGATE,
                    aggregate_id=login_subject(email),
                    event_type="LoginFailed",
                    actor="anonymous",
                    origin=origin,
                    data={"reason": "unknown_email"},
                )
                return
            await record_user_event(
                conn,
                tenant_id=user.tenant_id,
                user_id=user.id,
                event_type="LoginFailed",
                actor="anonymous",
                origin=origin,
                data={"reason": "inactive" if not user.is_active else "wrong_password"},
            )

    async def _open_session(
        self, conn: AsyncConnection, user: store.User, family_id: uuid.UUID
    ) -> Session:
        refresh_token = secrets.token_urlsafe(32)
        refresh_expires_at = datetime.now(UTC) + self.refresh_lifetime
        await store.insert_refresh_token(
            conn,
            token=refresh_token,
            tenant_id=user.tenant_id,
            user_id=user.id,
            family_id=family_id,
            expires_at=refresh_expires_at,
        )
        access = self.tokens.issue(
            user_id=user.id,
            tenant_id=user.tenant_id,
            role=user.role,
            session_id=family_id,
            generation=user.token_generation,
        )
        return Session(access, refresh_token, refresh_expires_at, user)

    # --- refresh ------------------------------------------------------------------------

    async def refresh(self, refresh_token: str, origin: RequestOrigin) -> Session:
        reused_family: uuid.UUID | None = None
        session: Session | None = None
        async with self.db.transaction() as conn:
            stored = await store.find_refresh_token(conn, refresh_token)
            if stored is None:
                raise Unauthorized("the refresh token is not valid")
            if stored.expires_at <= datetime.now(UTC):
                raise Unauthorized("the refresh token has expired")
            user = await store.lock_user(conn, stored.user_id)
            if user is None or user.tenant_id != stored.tenant_id or not user.is_active:
                raise Unauthorized("the refresh token is not valid")
            if not await store.mark_refresh_token_used(conn, stored.id):
                # Used before, or revoked: someone holds a copy. End the whole session.
                await store.revoke_refresh_family(conn, stored.family_id)
                await record_user_event(
                    conn,
                    tenant_id=user.tenant_id,
                    user_id=user.id,
                    event_type="RefreshTokenReused",
                    actor="anonymous",
                    origin=origin,
                    data={"session_id": str(stored.family_id)},
                )
                reused_family = stored.family_id
            else:
                session = await self._open_session(conn, user, stored.family_id)
        if reused_family is not None or session is None:
            raise Unauthorized("the refresh token has already been used; the session is revoked")
        return session

    # --- logout -------------------------------------------------------------------------

    async def logout(self, principal: Principal, origin: RequestOrigin) -> None:
        session = principal.session
        if session is None:
            raise InvalidInput(
                "an API key has no session to end; revoke it with DELETE /api/v1/auth/api-keys/{id}"
            )
        async with self.db.transaction() as conn:
            await store.revoke_access_token(
                conn,
                jti=session.token_id,
                tenant_id=principal.tenant_id,
                expires_at=session.expires_at,
            )
            await store.revoke_refresh_family(conn, session.session_id)
            await record_user_event(
                conn,
                tenant_id=principal.tenant_id,
                user_id=principal.subject_id,
                event_type="LoggedOut",
                actor=principal.actor,
                origin=origin,
                data={"session_id": str(session.session_id)},
            )
        self._standing.drop(
            (session.token_id, session.session_id, principal.tenant_id, principal.subject_id)
        )

    # --- every request ------------------------------------------------------------------

    async def authenticate(self, credential: str) -> Principal:
        """The caller behind an access token or API key, or `Unauthorized` with the reason."""
        if api_keys.looks_like_api_key(credential):
            return await self._authenticate_key(credential)
        return await self._authenticate_token(credential)

    async def _authenticate_key(self, key: str) -> Principal:
        now = datetime.now(UTC)
        cache_key = store.token_digest(key)
        lookup = self._keys.get(cache_key)
        if lookup is None:
            ticket = self._keys.ticket()
            async with self.db.read() as conn:
                lookup = _KeyLookup(await api_keys.find_by_key(conn, key))
            self._keys.put(cache_key, lookup, ticket)
        found = lookup.found
        if found is None or not found.usable_at(now):
            raise Unauthorized("the API key is not valid, expired or revoked")
        if found.last_used_at is None or now - found.last_used_at >= api_keys.LAST_USED_RESOLUTION:
            async with self.db.transaction() as conn:
                await api_keys.touch(conn, found, now)
            self._keys.drop(cache_key)
        return Principal(kind="api_key", subject_id=found.id, tenant_id=found.tenant_id,
                         role=found.role, expires_at=found.expires_at)  # fmt: skip

    async def _authenticate_token(self, token: str) -> Principal:
        try:
            claims = self.tokens.verify(token)
        except InvalidTokenError as exc:
            raise Unauthorized(str(exc)) from None
        session = UserSession(
            claims.token_id, claims.session_id, claims.expires_at, claims.generation
        )
        reason = _refusal(await self._standing_of(session, claims.tenant_id, claims.user_id),
                          session)  # fmt: skip
        if reason is not None:
            raise Unauthorized(reason)
        return Principal(
            kind="user",
            subject_id=claims.user_id,
            tenant_id=claims.tenant_id,
            role=claims.role,
            session=session,
            expires_at=claims.expires_at,
        )

    async def recheck(self, principal: Principal) -> str | None:
        """Why `principal`'s credential is no longer good (revoked, deactivated, demoted,
        expired), or None while it still is. For a credential in use beyond one request."""
        now = datetime.now(UTC)
        if principal.expires_at is not None and principal.expires_at <= now:
            return "the credential expired"
        if principal.session is not None:
            standing = await self._standing_of(
                principal.session, principal.tenant_id, principal.subject_id
            )
            return _refusal(standing, principal.session)
        lookup = self._key_ids.get(principal.subject_id)
        if lookup is None:
            ticket = self._key_ids.ticket()
            async with self.db.read() as conn:
                lookup = _KeyLookup(
                    await api_keys.get_api_key(conn, principal.tenant_id, principal.subject_id)
                )
            self._key_ids.put(principal.subject_id, lookup, ticket)
        found = lookup.found
        if found is None or not found.usable_at(now) or found.role != principal.role:
            return "the API key is not valid, expired or revoked"
        return None

    async def _standing_of(
        self, session: UserSession, tenant_id: uuid.UUID, user_id: uuid.UUID
    ) -> store.TokenStanding:
        key = (session.token_id, session.session_id, tenant_id, user_id)
        standing = self._standing.get(key)
        if standing is not None:
            return standing
        ticket = self._standing.ticket()
        async with self.db.read() as conn:
            standing = await store.token_standing(
                conn,
                jti=session.token_id,
                session_id=session.session_id,
                tenant_id=tenant_id,
                user_id=user_id,
            )
        self._standing.put(key, standing, ticket)
        return standing


_StandingKey = tuple[str, uuid.UUID, uuid.UUID, uuid.UUID]  # jti, session, tenant, user


def _refusal(standing: store.TokenStanding, session: UserSession) -> str | None:
    if not standing.user_active:  # first: deactivation revokes the sessions too
        return "the account is deactivated"
    if standing.revoked:
        return "the token has been revoked"
    if session.generation != standing.token_generation:
        return "the token has been revoked"  # role changed since it was issued
    return None
