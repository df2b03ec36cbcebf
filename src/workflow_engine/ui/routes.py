"""The dashboard's routes: `/ui` and its pages answer the shell, `/ui/static/{asset}` the
files it loads. Not in the OpenAPI document, not rate limited (`ratelimit/policy.py`), and
mounted only when `UI_ENABLED` is on."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from workflow_engine.api.routing import resource_router
from workflow_engine.errors import NotFound
from workflow_engine.ui import assets
from workflow_engine.ui.shell import shell_bytes

ROOT = "/ui"
# Every page of the dashboard: the router in `static/router.js` draws them from the path.
PAGES = (
    "/ui/",
    "/ui/runs",
    "/ui/runs/{run_id}",
    "/ui/approvals",
    "/ui/templates",
    "/ui/templates/{name}",
    "/ui/schedules",
    "/ui/usage",
    "/ui/services",
    "/ui/admin",
)
STATIC = "/ui/static/{asset}"
METHODS = ["GET", "HEAD"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The edge middleware adds the other security headers; these replace its defaults (its CSP
# forbids everything, and it marks answers `no-store`).
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = resource_router(include_in_schema=False)


def _answer(
    request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    """`body` with our headers; for HEAD only its headers, with the length GET would have."""
    all_headers = {**_HEADERS, **(headers or {})}
    if request.method == "HEAD":
        all_headers["Content-Length"] = str(len(body))
        body = b""
    return Response(body, media_type=media_type, headers=all_headers)


@router.api_route(ROOT, methods=METHODS)
async def ui_redirect() -> RedirectResponse:
    return RedirectResponse(f"{ROOT}/", status_code=308)


async def ui_shell(request: Request) -> Response:
    return _answer(request, shell_bytes(), "text/html; charset=utf-8")


for _page in PAGES:
    router.add_api_route(_page, ui_shell, methods=METHODS)


@router.api_route(STATIC, methods=METHODS)
async def ui_asset(asset: str, request: Request) -> Response:
    found = assets.find(asset)
    if found is None:
        raise NotFound(f"no dashboard asset named {asset!r}")
    headers = {"ETag": found.etag}
    if found.matches(request.headers.get("if-none-match")):
        return Response(status_code=304, headers={**_HEADERS, **headers})
    return _answer(request, found.body, found.media_type, headers)
