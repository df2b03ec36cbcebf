"""Authentication and authorisation as FastAPI dependencies.

A route declares the one permission it needs:

    async def handler(principal: Annotated[Principal, require(Permission.events_read)]): ...

which makes the route answer 401 without a valid credential and 403 when the caller's role
lacks the permission, and documents both in the OpenAPI spec (a `bearerAuth` security
requirement naming the permission). Routes without it are public.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    SecurityScopes,
)

from workflow_engine.api.context import Context
from workflow_engine.api.rate_limiting import PRINCIPAL_STATE
from workflow_engine.auth.audit import RequestOrigin
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.auth.service import AuthService
from workflow_engine.bootstrap.core_services import AuthServiceProvider
from workflow_engine.errors import Forbidden, Unauthorized
from workflow_engine.observability.correlation import current_correlation_id

SCHEME_NAME = "bearerAuth"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME_NAME,
    bearerFormat="JWT",
    description="An access token from `POST /api/v1/auth/login`.",
)


api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyAuth",
    description="An API key (`wek_...`); also accepted as `Authorization: Bearer <key>`.",
)


async def get_auth_service(context: Context) -> AuthService:
    return context.service("auth", AuthServiceProvider).auth


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def _authorise(
    request: Request,
    security_scopes: SecurityScopes,
    auth: AuthServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    credential = credentials.credentials if credentials else api_key
    if not credential:
        raise Unauthorized(
            "authentication required: send Authorization: Bearer <access token or API key>",
            invalid_token=False,
        )
    checked = getattr(request.state, PRINCIPAL_STATE, None)
    if checked is not None and checked[0] == credential:
        principal: Principal = checked[1]  # the rate limiter authenticated it moments ago
    else:
        principal = await auth.authenticate(credential)
    structlog.contextvars.bind_contextvars(
        tenant_id=str(principal.tenant_id), actor=principal.actor
    )
    for scope in security_scopes.scopes:
        permission = Permission(scope)
        if not principal.can(permission):
            raise Forbidden(f"the {principal.role} role does not have the {permission} permission")
    return principal


def require(permission: Permission) -> Any:
    """A dependency marker: the caller must hold `permission`."""
    return Security(_authorise, scopes=[permission.value])


async def request_origin(request: Request, context: Context) -> RequestOrigin:
    return RequestOrigin(
        client_address=context.clients.of(request.scope),
        correlation_id=current_correlation_id(),
    )


Origin = Annotated[RequestOrigin, Depends(request_origin)]
