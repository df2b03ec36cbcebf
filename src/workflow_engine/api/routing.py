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
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import request_response


def operation_id(route: APIRoute) -> str:
    return route.name


class ResourceRoute(APIRoute):
    """An API route; one whose function takes only the request and returns its own
    `Response` is served as Starlette serves a route.

    FastAPI calls every function through its dependency solver, inside two exit stacks, even
    when there is nothing to solve: for `/health`, which probes call every few seconds, that
    was most of what the route cost. Such a function needs none of it; it is still declared
    (and documented) like any other operation."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if _takes_only_the_request(self):
            self.app = request_response(endpoint)


def _takes_only_the_request(route: APIRoute) -> bool:
    dependant = route.dependant
    if dependant.request_param_name is None or dependant.dependencies:
        return False
    if len(inspect.signature(route.endpoint).parameters) != 1:
        return False
    returns = typing.get_type_hints(route.endpoint).get("return")
    return (
        inspect.iscoroutinefunction(route.endpoint)
        and inspect.isclass(returns)
        and issubclass(returns, Response)
    )


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
