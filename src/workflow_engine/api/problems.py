"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every error a client can cause — a domain error, an unknown path, a wrong method, malformed
JSON, a field that fails validation — leaves through `problem_response`, so all of them share
one shape and carry the correlation id. Handlers never build error bodies themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from workflow_engine.errors import TooManyRequests, WorkflowEngineError
from workflow_engine.observability.correlation import current_correlation_id

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:workflow-engine:problem:"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
# RFC 9110 names that Python 3.11's `HTTPStatus` still spells the old way.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def problem_type(slug: str) -> str:
    return TYPE_PREFIX + slug


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str,
    title: str | None = None,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = problem_document(status, detail, instance=instance, title=title, slug=slug)
    if errors is not None:
        body["errors"] = errors
    body.update(extensions or {})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def problem_document(
    status: int, detail: str, *, instance: str, title: str | None = None, slug: str | None = None
) -> dict[str, Any]:
    """The RFC 9457 body, for answers made outside FastAPI too (a worker's metrics port)."""
    title = title or _TITLES.get(status) or HTTPStatus(status).phrase
    return {
        "type": problem_type(slug or _slug(title)),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "correlation_id": current_correlation_id(),
    }


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkflowEngineError)
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        instance=request.url.path,
        errors=exc.errors,
        headers=exc.headers,
        extensions=(
            {"retry_after": round(exc.retry_after, 3)} if isinstance(exc, TooManyRequests) else None
        ),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 400 and detail == _FASTAPI_BODY_PARSE_ERROR:
        if (refused := await _refusal(request)) is not None:
            return refused
        # FastAPI's answer to a body it could not decode at all (bad UTF-8, absurd nesting).
        return problem_response(
            400, "The request body could not be decoded as JSON", title="Malformed JSON",
            instance=request.url.path,
        )  # fmt: skip
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        return problem_response(405, detail, instance=request.url.path, headers={"Allow": allowed})
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=exc.headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts on this path (Starlette names only the first route's)."""
    probe = {
        "type": "http",
        "path": request.scope["path"],
        "root_path": request.scope.get("root_path", ""),
        "headers": [],
        "query_string": b"",
    }
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**probe, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


async def _refusal(request: Request) -> JSONResponse | None:
    """The 401 or 403 the route's permission check gives this caller, if any.

    FastAPI decodes a JSON body before it solves the route's dependencies, so a malformed body
    would be answered before the credential is looked at, telling a caller without one what
    the route parses. Its permission check (`api.security.Authorise`, found by its
    `permission`: that module imports this one) runs here first instead."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    checks = [
        dependency.call
        for dependency in (dependant.dependencies if dependant is not None else ())
        if getattr(dependency.call, "permission", None) is not None
    ]
    for check in checks:
        try:
            await check(request)
        except WorkflowEngineError as refused:
            return await _domain_error(request, refused)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        if (refused := await _refusal(request)) is not None:
            return refused
        position = next(
            (error.get("ctx", {}).get("error") for error in raw if error["type"] == "json_invalid"),
            None,
        )
        detail = "The request body is not valid JSON" + (f": {position}" if position else "")
        return problem_response(400, detail, title="Malformed JSON", instance=request.url.path)
    # The rejected values are left out on purpose: they may be passwords or tokens.
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in raw
    ]
    count = len(errors)
    return problem_response(
        422,
        f"{count} field{'s' if count != 1 else ''} failed validation",
        title="Validation failed",
        slug="validation-failed",
        instance=request.url.path,
        errors=errors,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WorkflowEngineError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
