"""The rate-limit middleware: identify the caller, ask the limiter, answer 429 or add headers.

It runs before routing, so it authenticates the credential itself (through the same cached
`AuthService.authenticate` the routes use) and leaves the result in the request state for the
route's own check to reuse. A request with no valid credential is limited by client address.
"""

from __future__ import annotations

import math

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.api.context import AppContext
from workflow_engine.api.problems import problem_response
from workflow_engine.auth.principal import Principal
from workflow_engine.bootstrap.core_services import AuthServiceProvider, RateLimiterService
from workflow_engine.errors import ServiceUnavailable, Unauthorized
from workflow_engine.ratelimit.gcra import Decision

PRINCIPAL_STATE = "authenticated"


def credential_of(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, context: AppContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = self.context.service("rate_limiter", RateLimiterService).limiter
        if limiter.policy.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        principal = await self._identify(scope)
        key = principal.actor if principal else f"address:{self.context.clients.of(scope)}"
        tenant = str(principal.tenant_id) if principal else None
        try:
            decision = await limiter.check(scope["method"], scope["path"], key, tenant)
        except ServiceUnavailable as exc:  # fail-closed with the store away
            response = problem_response(503, exc.detail, instance=scope["path"])
            await response(scope, receive, send)
            return
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(decision)
        if not decision.allowed:
            response = problem_response(
                429,
                "rate limit exceeded; retry after the time in Retry-After",
                instance=scope["path"],
                headers={**headers, "Retry-After": str(max(1, math.ceil(decision.retry_after)))},
                extensions={"retry_after": round(decision.retry_after, 3)},
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableHeaders(scope=message)
                for name, value in headers.items():
                    mutable[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _identify(self, scope: Scope) -> Principal | None:
        credential = credential_of(Headers(scope=scope))
        if credential is None:
            return None
        auth = self.context.service("auth", AuthServiceProvider).auth
        try:
            principal = await auth.authenticate(credential)
        except Unauthorized:
            return None  # limited by address; the route answers the 401
        scope.setdefault("state", {})[PRINCIPAL_STATE] = (credential, principal)
        return principal


def _headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(max(0, math.ceil(decision.reset_after))),
    }
