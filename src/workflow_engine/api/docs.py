"""The OpenAPI document and Swagger UI, served entirely by us (users run it offline).

FastAPI documents its own validation-error shape for 422; our errors are problem+json, so the
generated document is rewritten once: every operation lists the problem responses it can
really give, all pointing at the `Problem` schema.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from swagger_ui_bundle import swagger_ui_path

from workflow_engine.api.problems import MEDIA_TYPE
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import SECURITY_SCHEMES, security_requirements
from workflow_engine.auth.permissions import Permission, roles_with
from workflow_engine.errors import NotFound
from workflow_engine.schemas.problems import FieldError, Problem
from workflow_engine.version import __version__

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_PATH = "/swagger-ui/"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

router = resource_router(include_in_schema=False)


@router.get("/swagger-ui")
async def docs_redirect() -> RedirectResponse:
    return RedirectResponse(DOCS_PATH, status_code=308)


@router.get(DOCS_PATH)
async def swagger_ui() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="workflow-engine API",
        swagger_js_url=f"{DOCS_PATH}swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_PATH}swagger-ui.css",
        swagger_favicon_url=f"{DOCS_PATH}favicon-32x32.png",
        # The default validator badge loads an image from the internet.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    page.headers["Content-Security-Policy"] = _DOCS_CSP
    return page


@router.api_route(DOCS_PATH + "{asset}", methods=["GET", "HEAD"])
async def swagger_asset(asset: str) -> FileResponse:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"no documentation asset named {asset!r}")
    return FileResponse(
        Path(str(swagger_ui_path)) / asset,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


# --- the OpenAPI document -------------------------------------------------------------------

_COMMON_PROBLEMS = {
    "500": "Unexpected server error (a bug: please report the correlation id)",
}
_BODY_PROBLEMS = {
    "400": "The body is not valid JSON",
    "413": "The body exceeds MAX_BODY_BYTES",
    "415": "The body is not declared as application/json",
}
_VALIDATION_PROBLEM = {"422": "A parameter or body field failed validation"}
# Answers any operation may give, documented where a route does not say more: a rate limit,
# a database that cannot be reached, an unknown id (or another tenant's) in the path, and a
# change the resource's state refuses.
_LIMIT_PROBLEM = {"429": "Too many requests: see the RateLimit and Retry-After headers"}
_OUTAGE_PROBLEM = {"503": "The database cannot be reached; nothing was done (see Retry-After)"}
_NOT_FOUND_PROBLEM = {"404": "No such resource here (another tenant's ids are unknown too)"}
_CONFLICT_PROBLEM = {"409": "The resource's current state does not allow this change"}
_CHANGES = frozenset({"post", "put", "patch", "delete"})
_AUTH_PROBLEMS = {
    "401": "No credential, or an invalid, expired or revoked one",
    "403": "The caller's role lacks the permission this operation requires",
}


def install_openapi(
    app: FastAPI, *, title: str, description: str, order: Sequence[APIRouter] = ()
) -> None:
    """`order`: the routers as the document lists them, whatever order they are matched in;
    other routes follow them, as they were added."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build(app, title, description, order)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _build(
    app: FastAPI, title: str, description: str, order: Sequence[APIRouter]
) -> dict[str, Any]:
    position = {id(route): index for index, router in enumerate(order) for route in router.routes}
    routes = sorted(app.routes, key=lambda route: position.get(id(route), len(order)))
    schema = get_openapi(
        title=title,
        version=__version__,
        openapi_version="3.1.0",
        description=description,
        routes=routes,
        license_info={"name": "MIT", "identifier": "MIT"},
    )
    _document_security(schema, routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    components.setdefault("FieldError", FieldError.model_json_schema())
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            _document_problems(operation)
            _document_possible(operation, path, method)
    return schema


def _document_security(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Each secured operation's security requirements, and the schemes they name."""
    secured = False
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        requirements = security_requirements(route.dependant)
        if not requirements:
            continue
        secured = True
        path_item = schema["paths"][route.path_format]
        for method in route.methods or ():
            path_item[method.lower()]["security"] = requirements
    if secured:
        schema.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)


def _document_permission(operation: dict[str, Any]) -> dict[str, str]:
    """Say in words which permission (and so which roles) a secured operation needs."""
    requirements = operation.get("security") or []
    scopes = list(dict.fromkeys(
        scope for requirement in requirements for scopes in requirement.values()
        for scope in scopes
    ))  # fmt: skip
    if not scopes:
        return {}
    lines = []
    for scope in scopes:
        roles = ", ".join(role.value for role in roles_with(Permission(scope)))
        lines.append(f"Requires the `{scope}` permission (roles: {roles}).")
    description = operation.get("description", "")
    operation["description"] = "\n\n".join(filter(None, [description, *lines]))
    return dict(_AUTH_PROBLEMS)


def _document_problems(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = dict(_COMMON_PROBLEMS)
    wanted.update(_document_permission(operation))
    if "422" in responses or operation.get("parameters"):
        wanted.update(_VALIDATION_PROBLEM)
    if "requestBody" in operation:
        wanted.update(_BODY_PROBLEMS)
        wanted.update(_VALIDATION_PROBLEM)
    for status, description in wanted.items():
        responses[status] = _problem_response(description)
    for status, response in responses.items():
        if status.startswith(("4", "5")) and "content" not in response:
            response["content"] = _problem_response(response.get("description", ""))["content"]


def _document_possible(operation: dict[str, Any], path: str, method: str) -> None:
    """The answers of `_LIMIT_PROBLEM` and the others, where the route says nothing of them:
    every operation but the probes may be limited or meet an outage, one with a path
    parameter may name what is not there, and a change may meet a state that refuses it."""
    possible: dict[str, str] = {}
    if not path.startswith(("/health", "/metrics")):
        possible.update(_LIMIT_PROBLEM)
        possible.update(_OUTAGE_PROBLEM)
    if "{" in path:
        possible.update(_NOT_FOUND_PROBLEM)
    if method in _CHANGES:
        possible.update(_CONFLICT_PROBLEM)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, description in possible.items():
        responses.setdefault(status, _problem_response(description))


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
