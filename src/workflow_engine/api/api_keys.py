"""`/api/v1/auth/api-keys`: a tenant admin issues and revokes keys for machines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api.context import DatabaseDep
from workflow_engine.api.pagination import Cursor, Limit, Page, decode_cursor, page_of
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.auth import api_keys
from workflow_engine.auth.permissions import Permission, Role
from workflow_engine.auth.principal import Principal
from workflow_engine.errors import InvalidInput

router = resource_router(prefix="/api/v1/auth/api-keys", tags=["auth"])
Admin = Annotated[Principal, require(Permission.api_keys_manage)]


class NewApiKey(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "crm-sync", "role": "service", "expires_in_days": 90}]
        },
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w .:@/-]+$")
    role: Role
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Never, when absent.")


class ApiKeyView(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="Identifies the key in lists and logs; not a secret.")
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class CreatedApiKey(ApiKeyView):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


def _view(key: api_keys.ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=key.role,
        created_by=key.created_by,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


@router.post("", status_code=201, summary="Issue an API key (its value is shown once)")
async def create_api_key(
    body: NewApiKey, admin: Admin, db: DatabaseDep, origin: Origin, response: Response
) -> CreatedApiKey:
    expires_at = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )
    stored, key = await api_keys.create_api_key(
        db,
        tenant_id=admin.tenant_id,
        name=body.name,
        role=body.role,
        expires_at=expires_at,
        actor=admin.actor,
        origin=origin,
    )
    response.headers["Location"] = f"/api/v1/auth/api-keys/{stored.id}"
    return CreatedApiKey(**_view(stored).model_dump(), key=key)


@router.get("", summary="List the tenant's API keys (never their values)")
async def list_api_keys(
    admin: Admin, db: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[ApiKeyView]:
    key = decode_cursor(cursor, id=str)
    try:
        after = uuid.UUID(key["id"]) if key else None
    except (TypeError, ValueError):
        raise InvalidInput("the cursor is not one this server issued") from None
    async with db.tenant_read(admin.tenant_id) as conn:
        found = await api_keys.list_api_keys(conn, admin.tenant_id, after_id=after, limit=limit + 1)
    return page_of(found, limit, _view, lambda key: {"id": str(key.id)})


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_api_key(
    key_id: uuid.UUID, admin: Admin, db: DatabaseDep, origin: Origin
) -> Response:
    await api_keys.revoke_api_key(
        db, tenant_id=admin.tenant_id, key_id=key_id, actor=admin.actor, origin=origin
    )
    return Response(status_code=204)
