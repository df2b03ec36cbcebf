"""How the API's routers are made and how they join the app: flat.

FastAPI keeps an included router as a node of its own: each request is matched against every
included router, then once more inside the one chosen, with the scope saved and restored
around each try — a fifth of a cheap read's time on this stack. The API's routes carry their
whole paths and want nothing from an include (no prefix, dependencies or responses of its
own), so `mount` adds them to the app's route list directly, where each is one `matches` call.

Two things an include would give are set here instead: the operation id, which names each
operation after its function (`run_status`, not `run_status_api_v1_..._get`), is the router's
setting, applied when a route is declared; and `app.dependency_overrides` does not reach these
routes (nothing of ours overrides a dependency; an embedding application's own routers, included
the usual way, keep it).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import request_response


def operation_id(route: APIRoute) -> str:
    return route.name


class ResourceRoute(APIRoute):
    """An API route. One whose dependencies are flat — each a coroutine taking only the
    request — whose parameters are its path's, and whose function returns its own `Response`
    is served with a handler of its own (`_direct_handler`) instead of FastAPI's.

    FastAPI runs every function through its general dependency solver inside two exit stacks:
    for each dependency it works out a cache key and the kind of callable again, and reads
    the query string, headers and cookies for parameters the dependency does not have. For a
    status read that was a third of what the route cost, for `/health` most of it. Such a
    route needs none of it; it is still declared, validated and documented like any other."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if _is_direct(self):
            self.app = request_response(_direct_handler(self))


def _is_direct(route: APIRoute) -> bool:
    dependant = route.dependant
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        return False
    if dependant.body_params or _special_parameters(dependant) - {"request"}:
        return False
    if not all(_takes_only_the_request(sub) for sub in dependant.dependencies):
        return False
    returns = typing.get_type_hints(route.endpoint).get("return")
    return (
        inspect.iscoroutinefunction(route.endpoint)
        and inspect.isclass(returns)
        and issubclass(returns, Response)
    )


def _special_parameters(dependant: Dependant) -> set[str]:
    """Which of FastAPI's special parameters (the request, the response, ...) it takes."""
    names = {
        "request": dependant.request_param_name,
        "websocket": dependant.websocket_param_name,
        "connection": dependant.http_connection_param_name,
        "response": dependant.response_param_name,
        "background_tasks": dependant.background_tasks_param_name,
        "security_scopes": dependant.security_scopes_param_name,
    }
    return {kind for kind, name in names.items() if name is not None}


def _takes_only_the_request(dependant: Dependant) -> bool:
    call = dependant.call
    coroutine = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004  # an instance with `async def __call__`
    )
    return (
        coroutine
        and dependant.request_param_name is not None
        and _special_parameters(dependant) == {"request"}
        and not (dependant.dependencies or dependant.path_params or dependant.query_params)
        and not (dependant.header_params or dependant.cookie_params or dependant.body_params)
    )


def _direct_handler(route: APIRoute) -> Callable[[Request], Awaitable[Response]]:
    """What FastAPI's handler does for such a route, in the same order: each dependency (once,
    however often it is named), then the path parameters, validated by the same fields and
    refused with the same `RequestValidationError`."""
    dependant = route.dependant
    endpoint = route.endpoint
    dependencies: list[tuple[str | None, Callable[..., Awaitable[Any]], str]] = [
        (sub.name, sub.call, sub.request_param_name)  # type: ignore[misc]  # checked by _is_direct
        for sub in dependant.dependencies
    ]
    path_params = dependant.path_params
    request_name = dependant.request_param_name

    async def handle(request: Request) -> Response:
        values: dict[str, Any] = {}
        solved: dict[int, Any] = {}
        for name, call, request_param in dependencies:
            key = id(call)
            if key not in solved:
                solved[key] = await call(**{request_param: request})
            if name is not None:
                values[name] = solved[key]
        if path_params:
            found, errors = request_params_to_args(path_params, request.path_params)
            if errors:
                raise RequestValidationError(errors)
            values.update(found)
        if request_name is not None:
            values[request_name] = request
        response: Response = await endpoint(**values)
        return response

    return handle


def resource_router(
    *, prefix: str = "", tags: Iterable[str] = (), include_in_schema: bool = True
) -> APIRouter:
    """A router of the API: routes declared on it are named by their function."""
    return APIRouter(
        prefix=prefix,
        tags=list(tags),
        include_in_schema=include_in_schema,
        generate_unique_id_function=operation_id,
        route_class=ResourceRoute,
    )


def mount(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Adds the routers' routes to `app`, in order, as routes of its own."""
    for router in routers:
        app.router.routes.extend(router.routes)
