"""One access line per request, the counters behind `/api/v1/uptime`, and the HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.observability import metrics
from workflow_engine.observability.request_stats import RequestStats

logger = structlog.get_logger("workflow_engine.access")
# Any other method a client invents is one label, not one series each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLogMiddleware:
    """Logs method, route template, status and duration — never a body, query or secret."""

    def __init__(self, app: ASGIApp, stats: RequestStats, routes: RouteTable | None = None) -> None:
        self.app = app
        self.stats = stats
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")  # a mounted app (the demo services) extends it
        answered: float | None = None  # when a stream's answer began
        status = 500
        metrics.http_in_flight.inc()
        in_flight = True

        async def recording_send(message: Message) -> None:
            nonlocal status, answered, in_flight
            if message["type"] == "http.response.start":
                status = message["status"]
                if _streams(message):
                    # A stream lasts as long as its reader stays: its latency is the time to
                    # its first byte, and `sse_subscribers` counts it while it is open.
                    answered = time.perf_counter()
                    metrics.http_in_flight.dec()
                    in_flight = False
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            ended = time.perf_counter()
            duration_ms = (ended - started) * 1000
            response_ms = ((answered or ended) - started) * 1000
            self.stats.record(status, response_ms)
            route = route_template(scope, self.routes, root_path)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            if in_flight:
                metrics.http_in_flight.dec()
            metrics.http_requests.labels(method, route, str(status)).inc()
            metrics.http_duration.labels(method, route).observe(response_ms / 1000)
            logger.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(duration_ms, 2),
            )


def _streams(start: Message) -> bool:
    return any(
        name == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in start.get("headers", ())
    )


class RouteTable:
    """The API's path templates, to name requests answered before routing (a 429 from the
    rate limiter, a 413 or 415 from the body checks) by their route too."""

    def __init__(self, routers: Iterable[APIRouter] = ()) -> None:
        self._routes = [
            (route.path_regex, route.path_format)
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
        ]

    def template(self, path: str) -> str | None:
        for pattern, template in self._routes:
            if pattern.match(path):
                return template
        return None


def route_template(scope: Scope, table: RouteTable | None = None, root_path: str = "") -> str:
    """The matched route's template (`/api/v1/workflows/{id}/status`), never the raw path;
    `<unmatched>` for a path no route matches. A route of a mounted app is named with the
    mount's path in front (`/demo/mcp/notion/`), not as its own bare `/`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template and table is not None:
        template = table.template(scope["path"])
    if not template:
        return "<unmatched>"
    mounted_at = str(scope.get("root_path", ""))[len(root_path) :]
    return f"{mounted_at}{template}" if mounted_at.startswith("/") else str(template)
