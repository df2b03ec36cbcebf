"""One access line per request, and the counters behind `/api/v1/uptime`."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.observability.request_stats import RequestStats

logger = structlog.get_logger("workflow_engine.access")


class AccessLogMiddleware:
    """Logs method, route template, status and duration — never a body, query or secret."""

    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            self.stats.record(status, duration_ms)
            logger.info(
                "request",
                method=scope["method"],
                route=route_template(scope),
                status=status,
                duration_ms=round(duration_ms, 2),
            )


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/workflows/{id}/status`), never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else "<unmatched>"
