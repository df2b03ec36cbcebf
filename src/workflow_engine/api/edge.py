"""The outermost middleware: what every answer gets, whoever produced it.

One plain ASGI layer does what used to be three — the correlation id, the access line and
HTTP metrics, the security headers — because every layer costs each request a call and a
wrapped `send`, and all three act at the same two moments: when the request arrives and when
the answer starts. The response's headers are walked once, and ours are appended as bytes
encoded at start-up.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.observability.access_log import AccessLog, RouteTable
from workflow_engine.observability.correlation import (
    HEADER,
    correlation_id_var,
    incoming_id,
    new_id,
)
from workflow_engine.observability.request_stats import RequestStats

Headers = list[tuple[bytes, bytes]]

#: Conservative browser-facing headers. A response may set its own (the docs page sets its CSP,
#: the JWKS its caching): these are added only where it has not.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
HSTS = {"Strict-Transport-Security": "max-age=31536000; includeSubDomains"}

_CORRELATION_HEADER = HEADER.lower().encode("latin-1")
_EVENT_STREAM = b"text/event-stream"


def _encoded(headers: dict[str, str]) -> Headers:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


class EdgeMiddleware:
    """Binds the request's correlation id (from `X-Correlation-ID` or `X-Request-ID` when it
    is a short header-safe token, else a new UUID) for everything below it, errors included,
    and sends it back; records the access line, `/api/v1/uptime` counters and HTTP metrics;
    adds the security headers (HSTS too when `hsts`)."""

    def __init__(
        self, app: ASGIApp, *, stats: RequestStats, routes: RouteTable | None, hsts: bool
    ) -> None:
        self.app = app
        self.access = AccessLog(stats, routes)
        self.security = _encoded({**SECURITY_HEADERS, **(HSTS if hsts else {})})
        self._security_names = frozenset(name for name, _ in self.security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")  # a mounted app (the demo services) extends it
        correlation_id = incoming_id(scope["headers"]) or new_id()
        own_headers: Headers = [(_CORRELATION_HEADER, correlation_id.encode("latin-1"))]
        token = correlation_id_var.set(correlation_id)
        bound = structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        status = 500
        answered: float | None = None  # when a stream's answer began
        self.access.started()

        async def edge_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                headers, streams = self._finish_headers(message.get("headers", ()), own_headers)
                message["headers"] = headers
                if streams:
                    answered = time.perf_counter()
                    self.access.answering()
            await send(message)

        try:
            await self.app(scope, receive, edge_send)
        finally:
            ended = time.perf_counter()
            self.access.finished(
                scope, root_path, status, duration=ended - started,
                response_time=(answered or ended) - started, in_flight=answered is None,
            )  # fmt: skip
            structlog.contextvars.reset_contextvars(**bound)
            correlation_id_var.reset(token)

    def _finish_headers(self, given: Headers, own: Headers) -> tuple[Headers, bool]:
        """The response's headers with the correlation id (replacing any) and the security
        headers it did not set itself; and whether it is an event stream."""
        headers: Headers = []
        present: set[bytes] = set()
        streams = False
        for name, value in given:
            if name == _CORRELATION_HEADER:
                continue
            if name in self._security_names:
                present.add(name)
            elif name == b"content-type" and value.startswith(_EVENT_STREAM):
                streams = True
            headers.append((name, value))
        if present:
            headers += [pair for pair in self.security if pair[0] not in present]
        else:
            headers += self.security
        headers += own
        return headers, streams
