"""CORS, only when `CORS_ORIGINS` is set: Starlette's, with a refused preflight answered as a
problem like any other error."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from workflow_engine.api.problems import problem_response


class CORSProblemMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await super().__call__(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "origin" not in headers or "access-control-request-method" not in headers:
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
