"""`/api/v1/auth`: login, refresh, logout, and who am I."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from workflow_engine.api.context import DatabaseDep
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import AuthServiceDep, Origin, require
from workflow_engine.api.validation import StorableText
from workflow_engine.auth import api_keys, store
from workflow_engine.auth.passwords import MAX_LENGTH
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.auth.service import Session
from workflow_engine.errors import NotFound
from workflow_engine.schemas.auth import CallerView, TokenResponse, UserView

router = resource_router(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "user@example.com", "password": "password"}]},
    )

    email: StorableText | None = Field(None, min_length=3, max_length=320)
    username: StorableText | None = Field(
        None, min_length=3, max_length=320, description="Accepted as a synonym of `email`."
    )
    password: StorableText = Field(min_length=1, max_length=MAX_LENGTH)

    @model_validator(mode="after")
    def _needs_a_name(self) -> LoginRequest:
        if (self.email or self.username) is None:
            raise ValueError("send `email` (or `username`)")
        return self

    @property
    def login_name(self) -> str:
        return self.email or self.username or ""


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: StorableText = Field(min_length=1, max_length=512)


def _user_view(user: store.User) -> UserView:
    return UserView(
        id=str(user.id), email=user.email, role=user.role, tenant_id=str(user.tenant_id)
    )


def _token_response(session: Session) -> TokenResponse:
    access = session.access
    lifetime = access.claims.expires_at - access.claims.issued_at
    refresh_lifetime = session.refresh_expires_at - access.claims.issued_at
    return TokenResponse(
        token=access.token,
        access_token=access.token,
        refresh_token=session.refresh_token,
        # `exp` is whole seconds after a fractional `iat`: round up to the configured lifetime.
        expires_in=math.ceil(lifetime.total_seconds()),
        refresh_expires_in=max(0, math.ceil(refresh_lifetime.total_seconds())),
        user=_user_view(session.user),
    )


@router.post(
    "/login",
    summary="Exchange email and password for an access and a refresh token",
    responses={401: {"description": "Wrong email or password (the same answer for both)"}},
)
async def login(body: LoginRequest, auth: AuthServiceDep, origin: Origin) -> TokenResponse:
    session = await auth.login(body.login_name, body.password, origin)
    return _token_response(session)


@router.post(
    "/refresh",
    summary="Exchange a refresh token for a new pair (the old one is spent)",
    responses={401: {"description": "Unknown, expired or already used refresh token"}},
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep, origin: Origin) -> TokenResponse:
    session = await auth.refresh(body.refresh_token, origin)
    return _token_response(session)


@router.post(
    "/logout",
    status_code=204,
    summary="Revoke this access token and its session",
    responses={422: {"description": "An API key has no session: revoke the key instead"}},
)
async def logout(
    principal: Annotated[Principal, require(Permission.profile_read)],
    auth: AuthServiceDep,
    origin: Origin,
) -> Response:
    await auth.logout(principal, origin)
    return Response(status_code=204)


@router.get("/me", summary="The authenticated caller: a user or an API key")
async def me(
    principal: Annotated[Principal, require(Permission.profile_read)], db: DatabaseDep
) -> CallerView:
    async with db.tenant_read(principal.tenant_id) as conn:
        if principal.is_user:
            user = await store.get_user(conn, principal.tenant_id, principal.subject_id)
            name, email = None, user.email if user else None
        else:
            key = await api_keys.get_api_key(conn, principal.tenant_id, principal.subject_id)
            name, email = (key.name if key else None), None
    if name is None and email is None:
        raise NotFound("the caller no longer exists")
    return CallerView(
        kind=principal.kind,
        id=str(principal.subject_id),
        role=principal.role,
        tenant_id=str(principal.tenant_id),
        email=email,
        name=name,
    )
