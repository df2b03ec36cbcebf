"""HTTP middleware, one job each. Plain ASGI classes, so streaming responses pass untouched."""

from __future__ import annotations

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.api.problems import problem_response

logger = structlog.get_logger(__name__)

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class UnhandledErrorMiddleware:
    """Turns an unexpected exception into a 500 problem; logs the traceback, never shows it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error", method=scope["method"], path=scope["path"])
            if started:  # too late for a clean answer: the connection is dropped instead
                raise
            response = problem_response(
                500,
                "The server failed to handle this request; quote the correlation id to report it",
                slug="internal-error",
                instance=scope["path"],
            )
            await response(scope, receive, send)


class BodyTooLargeError(HTTPException):
    """Raised from `receive` once the body passes the limit.

    An `HTTPException` on purpose: FastAPI turns any other error raised while it reads a body
    into a generic 400, but lets this one through to the problem handlers as a 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds the limit of {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 — declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            f"The request body exceeds the limit of {self.max_bytes} bytes",
            instance=scope["path"],
        )
        await response(scope, receive, send)


class JsonContentTypeMiddleware:
    """A request with a body must declare it as JSON (415 otherwise), before parsing starts.

    Without this, FastAPI would try to read a form or text body as JSON and answer with a
    misleading validation error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = (_header(scope, b"transfer-encoding") or "").lower() == "chunked"
        has_body = chunked or (length is not None and length != "0")
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if has_body and not _is_json(content_type):
            response = problem_response(
                415,
                f"Send the body as application/json (got {content_type or 'no content type'})",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class SecurityHeadersMiddleware:
    """Conservative browser-facing headers; a response may set its own CSP (the docs page does)."""

    _HEADERS = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "Cache-Control": "no-store",
    }

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = dict(self._HEADERS)
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class CORSProblemMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered as a problem like any error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        is_preflight = (
            headers is not None
            and scope["method"] == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )
        if not is_preflight or headers is None:
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code == 400:
            reason = bytes(response.body).decode()
            response = problem_response(
                400, f"CORS preflight refused: {reason}", instance=scope["path"],
                slug="cors-preflight-refused",
            )  # fmt: skip
        await response(scope, receive, send)
