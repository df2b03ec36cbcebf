"""Rate limiting of requests: identify the caller, ask the limiter, refuse or name the headers.

`api/guard.py` runs it before routing, so it authenticates the credential itself (through the
same cached `AuthService.authenticate` the routes use) and leaves the result in the request
state for the route's own check to reuse. A request with no valid credential is limited by
client address.
"""

from __future__ import annotations

import math

from starlette.responses import Response
from starlette.types import Scope

from workflow_engine.api.context import AppContext
from workflow_engine.api.problems import problem_response
from workflow_engine.auth.principal import Principal
from workflow_engine.bootstrap.core_services import AuthServiceProvider, RateLimiterService
from workflow_engine.errors import ServiceUnavailable, Unauthorized
from workflow_engine.ratelimit.gcra import Decision
from workflow_engine.ratelimit.limiter import RateLimiter

PRINCIPAL_STATE = "authenticated"

Headers = list[tuple[bytes, bytes]]
_NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
_RAW_NAMES = tuple(name.lower().encode("latin-1") for name in _NAMES)


def credential_of(authorization: str | None, api_key: str | None) -> str | None:
    """The bearer token, else the `X-API-Key`, as the routes' own check reads them."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return api_key or None


class RateLimits:
    """What the limiter says of one request: a refusal to send (429, or 503 when the limit
    store is away and the limiter fails closed), or the `RateLimit-*` headers for the answer
    (none for an exempt path)."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        # Looked up once: the services are fixed when the app is built.
        self._limiter_service: RateLimiterService | None = None
        self._auth_service: AuthServiceProvider | None = None

    def _limiter(self) -> RateLimiter:
        if self._limiter_service is None:
            self._limiter_service = self.context.service("rate_limiter", RateLimiterService)
        return self._limiter_service.limiter

    async def check(self, scope: Scope, credential: str | None) -> Response | Headers:
        limiter = self._limiter()
        path = scope["path"]
        if limiter.policy.exempt(path):
            return []
        principal = await self._identify(scope, credential) if credential else None
        key = principal.actor if principal else f"address:{self.context.clients.of(scope)}"
        tenant = str(principal.tenant_id) if principal else None
        try:
            decision = await limiter.check(scope["method"], path, key, tenant)
        except ServiceUnavailable as exc:  # fail-closed with the store away
            return problem_response(503, exc.detail, instance=path)
        if decision is None:
            return []
        if not decision.allowed:
            return problem_response(
                429,
                "rate limit exceeded; retry after the time in Retry-After",
                instance=path,
                headers={
                    **dict(zip(_NAMES, _values(decision), strict=True)),
                    "Retry-After": str(max(1, math.ceil(decision.retry_after))),
                },
                extensions={"retry_after": round(decision.retry_after, 3)},
            )
        return [
            (name, value.encode("latin-1"))
            for name, value in zip(_RAW_NAMES, _values(decision), strict=True)
        ]

    async def _identify(self, scope: Scope, credential: str) -> Principal | None:
        if self._auth_service is None:
            self._auth_service = self.context.service("auth", AuthServiceProvider)
        auth = self._auth_service.auth
        try:
            principal = await auth.authenticate(credential)
        except Unauthorized:
            return None  # limited by address; the route answers the 401
        scope.setdefault("state", {})[PRINCIPAL_STATE] = (credential, principal)
        return principal


def _values(decision: Decision) -> tuple[str, str, str]:
    """The values of `RateLimit-Limit`, `-Remaining` and `-Reset`."""
    reset = max(0, math.ceil(decision.reset_after))
    return str(decision.limit), str(decision.remaining), str(reset)
