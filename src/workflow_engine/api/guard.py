"""The inner middleware: which requests the API takes, and the error boundary around them.

One plain ASGI layer, in this order: the rate limit (before the body is read, so a throttled
client's upload is never received), the body size (413 from `Content-Length`, or as soon as a
streamed body passes the limit), the content type (415 for a body that is not JSON, before
FastAPI tries to parse it), then the app — and around all of it, the boundary that turns an
unexpected exception into a 500 problem. It sits inside CORS, so that a 429 or a 500 carries the
CORS headers a browser needs to read it. These were four layers; one walks the request's
headers once and wraps `send` once.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.api.context import AppContext
from workflow_engine.api.problems import problem_response
from workflow_engine.api.rate_limiting import Headers, RateLimits, credential_of
from workflow_engine.db.availability import RETRY_AFTER_SECONDS, availability, unreachable

logger = structlog.get_logger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_READ_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"content-length", b"transfer-encoding", b"content-type"}
)


class BodyTooLargeError(HTTPException):
    """Raised from `receive` once the body passes the limit.

    An `HTTPException` on purpose: FastAPI turns any other error raised while it reads a body
    into a generic 400, but lets this one through to the problem handlers as a 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds the limit of {max_bytes} bytes")


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, context: AppContext, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.rate_limits = RateLimits(context)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        rate_limit_headers: Headers = []

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if rate_limit_headers:
                    message["headers"] = [*message.get("headers", ()), *rate_limit_headers]
            await send(message)

        try:
            try:
                await self._admit(scope, receive, guarded_send, rate_limit_headers)
            except BodyTooLargeError:
                if started:
                    raise
                await self._too_large(scope, receive, guarded_send)
        except Exception as exc:
            if unreachable(exc):
                availability.failed(exc, f"{scope['method']} {scope['path']}")
                if started:
                    raise
                await _unavailable(scope)(scope, receive, send)
                return
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

    async def _admit(self, scope: Scope, receive: Receive, send: Send, added: Headers) -> None:
        """Answers a refusal, or calls the app (adding the rate-limit headers to its answer)."""
        headers = _first_values(scope["headers"])
        verdict = await self.rate_limits.check(
            scope, credential_of(_text(headers, b"authorization"), _text(headers, b"x-api-key"))
        )
        if isinstance(verdict, Response):
            await verdict(scope, receive, send)
            return
        added += verdict
        declared = _text(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        refusal = _unsupported_media_type(scope, headers, declared)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            f"The request body exceeds the limit of {self.max_bytes} bytes",
            instance=scope["path"],
        )
        await response(scope, receive, send)


def _unavailable(scope: Scope) -> Response:
    return problem_response(
        503,
        "The database cannot be reached, so the request was not carried out (no run was "
        f"started, nothing was changed); retry in {RETRY_AFTER_SECONDS} s",
        title="Database unavailable",
        slug="database-unavailable",
        instance=scope["path"],
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unsupported_media_type(
    scope: Scope, headers: dict[bytes, bytes], declared: str | None
) -> Response | None:
    """A request with a body must declare it as JSON. Without this, FastAPI would try to read
    a form or text body as JSON and answer with a misleading validation error."""
    if scope["method"] not in _BODY_METHODS:
        return None
    chunked = (_text(headers, b"transfer-encoding") or "").lower() == "chunked"
    has_body = chunked or (declared is not None and declared != "0")
    content_type = (_text(headers, b"content-type") or "").split(";")[0].strip().lower()
    if not has_body or content_type == "application/json" or content_type.endswith("+json"):
        return None
    return problem_response(
        415,
        f"Send the body as application/json (got {content_type or 'no content type'})",
        instance=scope["path"],
    )


def _first_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request headers this layer reads, each at its first occurrence (as Starlette's
    `Headers.get`, which the routes use, would find it)."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _READ_HEADERS and name not in found:
            found[name] = value
    return found


def _text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")
