"""Correlation ids: taken from the request (or made), bound into every log line, sent back."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Correlation-ID"
_ACCEPTED_HEADERS = (b"x-correlation-id", b"x-request-id")
# Ids end up in logs and headers: accept only short, printable, header-safe tokens.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    return correlation_id_var.get()


def _incoming_id(scope: Scope) -> str | None:
    headers: dict[bytes, bytes] = dict(scope.get("headers", []))
    for name in _ACCEPTED_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        value = raw.decode("latin-1").strip()
        if _VALID_ID.match(value):
            return value
    return None


class CorrelationIdMiddleware:
    """Outermost middleware: everything below it, errors included, runs with the id bound."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = _incoming_id(scope) or str(uuid.uuid4())
        token = correlation_id_var.set(correlation_id)
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = correlation_id
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                correlation_id_var.reset(token)
