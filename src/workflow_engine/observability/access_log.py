"""One access line per request, the counters behind `/api/v1/uptime`, and the HTTP metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.types import Scope

from workflow_engine.observability import metrics
from workflow_engine.observability.request_stats import RequestStats

ACCESS_LOGGER = "workflow_engine.access"
# Any other method a client invents is one label, not one series each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLog:
    """Records each finished request: one access line (method, route template, status,
    duration — never a body, query or secret), the counters behind `/api/v1/uptime`, and the
    HTTP metrics. `api/edge.py` calls it; it keeps no state per request."""

    def __init__(self, stats: RequestStats, routes: RouteTable | None = None) -> None:
        self.stats = stats
        self.routes = routes
        # Bound once: the lazy proxy would look its configuration up again on every call.
        self._logger = structlog.get_logger(ACCESS_LOGGER).bind()
        # prometheus_client's `labels()` checks and locks on each call; a series, once made,
        # is the same object for the life of the process.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @staticmethod
    def started() -> None:
        metrics.http_in_flight.inc()

    @staticmethod
    def answering() -> None:
        """A stream began: it lasts as long as its reader stays, so its latency is the time
        to its first byte and `sse_subscribers` counts it while it is open, not in flight."""
        metrics.http_in_flight.dec()

    def finished(
        self,
        scope: Scope,
        root_path: str,
        status: int,
        duration: float,
        response_time: float,
        in_flight: bool,
    ) -> None:
        """`duration` and `response_time` in seconds: the whole exchange, and until the answer
        began (the same but for a stream)."""
        self.stats.record(status, response_time * 1000)
        route = route_template(scope, self.routes, root_path)
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        if in_flight:
            metrics.http_in_flight.dec()
        series = self._series.get((method, route, status))
        if series is None:
            series = (
                metrics.http_requests.labels(method, route, str(status)),
                metrics.http_duration.labels(method, route),
            )
            self._series[(method, route, status)] = series
        requests, durations = series
        requests.inc()
        durations.observe(response_time)
        if self._logger.is_enabled_for(logging.INFO):
            self._logger.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 2),
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
