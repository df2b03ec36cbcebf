"""`/api/v1/users`: a tenant admin manages the tenant's users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api.context import DatabaseDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import AuthServiceDep, Origin, require
from workflow_engine.api.validation import StorableText
from workflow_engine.auth import accounts, store
from workflow_engine.auth.passwords import MAX_LENGTH
from workflow_engine.auth.permissions import Permission, Role
from workflow_engine.auth.principal import Principal
from workflow_engine.errors import InvalidInput, NotFound

router = resource_router(prefix="/api/v1/users", tags=["users"])
Admin = Annotated[Principal, require(Permission.users_manage)]


class UserDetail(BaseModel):
    id: uuid.UUID
    email: str
    role: Role
    tenant_id: uuid.UUID
    is_active: bool
    created_at: datetime


class NewUser(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "dana@example.com",
                    "role": "operator",
                    "password": "a long unusual passphrase",
                }
            ]
        },
    )

    email: StorableText = Field(min_length=3, max_length=320)
    role: Role
    password: StorableText = Field(min_length=1, max_length=MAX_LENGTH)


class UserChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "viewer"}, {"is_active": False}]}
    )

    role: Role | None = None
    is_active: bool | None = Field(
        None, description="false deactivates the user and ends all of their sessions."
    )


def _detail(user: store.User) -> UserDetail:
    return UserDetail(
        id=user.id,
        email=user.email,
        role=user.role,
        tenant_id=user.tenant_id,
        is_active=user.is_active,
        created_at=user.created_at,
    )


@router.get("", summary="List the tenant's users")
async def list_users(
    admin: Admin, db: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[UserDetail]:
    key = decode_cursor(cursor, email=str)
    async with db.tenant_read(admin.tenant_id) as conn:
        found = await store.list_users(
            conn, admin.tenant_id, after_email=key["email"] if key else None, limit=limit + 1
        )
    return page_of(found, limit, _detail, lambda user: {"email": user.email})


@router.post("", status_code=201, summary="Create a user in the caller's tenant")
async def create_user(
    body: NewUser, admin: Admin, auth: AuthServiceDep, origin: Origin, response: Response
) -> UserDetail:
    user = await accounts.create_user_in_tenant(
        auth.db,
        auth.passwords,
        tenant_id=admin.tenant_id,
        email=body.email,
        password=body.password,
        role=body.role,
        actor=admin.actor,
        origin=origin,
    )
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return _detail(user)


@router.get("/{user_id}", summary="A user of the caller's tenant")
async def get_user(user_id: uuid.UUID, admin: Admin, db: DatabaseDep) -> UserDetail:
    async with db.tenant_read(admin.tenant_id) as conn:
        user = await store.get_user(conn, admin.tenant_id, user_id)
    if user is None:
        raise NotFound("no such user")
    return _detail(user)


@router.patch("/{user_id}", summary="Change a user's role, or deactivate or reactivate them")
async def change_user(
    user_id: uuid.UUID, body: UserChange, admin: Admin, db: DatabaseDep, origin: Origin
) -> UserDetail:
    if body.role is None and body.is_active is None:
        raise InvalidInput("send `role`, `is_active`, or both")
    user = await accounts.change_user(
        db,
        tenant_id=admin.tenant_id,
        user_id=user_id,
        actor_id=admin.subject_id,
        actor=admin.actor,
        role=body.role,
        is_active=body.is_active,
        origin=origin,
    )
    return _detail(user)
