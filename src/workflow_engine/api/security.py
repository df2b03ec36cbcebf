"""Authentication and authorisation as FastAPI dependencies.

A route declares the one permission it needs:

    async def handler(principal: Annotated[Principal, require(Permission.events_read)]): ...

which makes the route answer 401 without a valid credential and 403 when the caller's role
lacks the permission. The OpenAPI document names the permission as a security requirement of
the operation (`bearerAuth` or `apiKeyAuth`, see `security_requirements`). Routes without it
are public.

The check is one dependency that reads the request itself. FastAPI's own security classes
(`HTTPBearer`, `APIKeyHeader`, `Security` scopes) would describe the schemes for the document
by themselves, but each is a node FastAPI solves on every request, and every node costs a
few microseconds before it does anything; a read pays for the whole tree.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from workflow_engine.api.context import Context, context_of
from workflow_engine.api.rate_limiting import PRINCIPAL_STATE, credential_of
from workflow_engine.auth.audit import RequestOrigin
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.auth.service import AuthService
from workflow_engine.bootstrap.core_services import AuthServiceProvider
from workflow_engine.errors import Forbidden, Unauthorized
from workflow_engine.observability.correlation import current_correlation_id

BEARER_SCHEME = "bearerAuth"
API_KEY_SCHEME = "apiKeyAuth"

#: The OpenAPI security schemes a secured operation accepts (either one).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER_SCHEME: {
        "type": "http",
        "description": "An access token from `POST /api/v1/auth/login`.",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    },
    API_KEY_SCHEME: {
        "type": "apiKey",
        "description": "An API key (`wek_...`); also accepted as `Authorization: Bearer <key>`.",
        "in": "header",
        "name": "X-API-Key",
    },
}


def _auth_service(request: Request) -> AuthService:
    return context_of(request).service("auth", AuthServiceProvider).auth


async def get_auth_service(request: Request) -> AuthService:
    return _auth_service(request)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


class Authorise:
    """The dependency `require(permission)` declares: the caller's principal, if its
    credential is valid and its role holds `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        # The rate limiter (`api/guard.py`) authenticated this request's credential already,
        # unless its path is exempt or the credential was refused.
        checked = request.scope.get("state", {}).get(PRINCIPAL_STATE)
        if checked is not None:
            principal: Principal = checked[1]
        else:
            headers = request.headers
            credential = credential_of(headers.get("authorization"), headers.get("x-api-key"))
            if not credential:
                raise Unauthorized(
                    "authentication required: send Authorization: Bearer <access token or API key>",
                    invalid_token=False,
                )
            principal = await _auth_service(request).authenticate(credential)
        structlog.contextvars.bind_contextvars(
            tenant_id=str(principal.tenant_id), actor=principal.actor
        )
        if not principal.can(self.permission):
            raise Forbidden(
                f"the {principal.role} role does not have the {self.permission} permission"
            )
        return principal


@cache
def _authorise(permission: Permission) -> Authorise:
    return Authorise(permission)


def require(permission: Permission) -> Any:
    """A dependency marker: the caller must hold `permission`."""
    return Depends(_authorise(permission))


def security_requirements(dependant: Dependant) -> list[dict[str, list[str]]]:
    """An operation's OpenAPI security requirements: the permissions its dependencies require,
    each accepted with either scheme."""
    permissions: list[str] = []
    pending = [dependant]
    while pending:
        node = pending.pop()
        if isinstance(node.call, Authorise) and node.call.permission.value not in permissions:
            permissions.append(node.call.permission.value)
        pending.extend(node.dependencies)
    if not permissions:
        return []
    return [{BEARER_SCHEME: permissions}, {API_KEY_SCHEME: permissions}]


async def request_origin(request: Request, context: Context) -> RequestOrigin:
    return RequestOrigin(
        client_address=context.clients.of(request.scope),
        correlation_id=current_correlation_id(),
    )


Origin = Annotated[RequestOrigin, Depends(request_origin)]
