"""Each API operation as data: what to send and how to read the answer. `Client` and
`AsyncClient` only carry these out, so the two can never disagree on a path or a model."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from workflow_engine.schemas.approvals import ApprovalView, DecisionView
from workflow_engine.schemas.auth import CallerView, TokenResponse
from workflow_engine.schemas.pages import Page
from workflow_engine.schemas.registry import ServiceCheck, ServiceCheckList, ServiceView
from workflow_engine.schemas.runs import (
    FinishedRun,
    LogEntryView,
    RunResults,
    RunStatus,
    RunSummary,
    TriggeredRun,
)
from workflow_engine.schemas.workflows import Template, TemplateList

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RunId = uuid.UUID | str
#: Added to the client's timeout for a trigger that waits: the answer comes after `wait`.
WAIT_MARGIN = 10.0
#: Seconds without a byte before a stream is taken for dead: the server pings every 15 s.
STREAM_READ_TIMEOUT = 45.0
LOG_PAGE = 200
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's
    authenticated: bool = True

    def request(
        self, client: httpx.Client | httpx.AsyncClient, headers: dict[str, str]
    ) -> httpx.Request:
        params = {k: v for k, v in self.params.items() if v is not None}
        timeout = httpx.USE_CLIENT_DEFAULT if self.timeout is None else self.timeout
        return client.build_request(
            self.method, self.path, params=params, json=self.json,
            headers={**self.headers, **headers}, timeout=timeout,
        )  # fmt: skip


def _model(kind: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: kind.model_validate_json(response.content)


def _page(kind: type[M]) -> Callable[[httpx.Response], Page[M]]:
    adapter = TypeAdapter(Page[kind])  # type: ignore[valid-type]
    return lambda response: adapter.validate_json(response.content)


def _nothing(_response: httpx.Response) -> None:
    return None


def _segment(value: object) -> str:
    """A path segment as given, quoted: a name like `../x` must not change the path."""
    return quote(str(value), safe="")


def _run(run_id: RunId) -> str:
    return f"/api/v1/workflows/{_segment(run_id)}"


# --- auth --------------------------------------------------------------------------------------


def login(email: str, password: str) -> Call[TokenResponse]:
    body = {"email": email, "password": password}
    return Call("POST", "/api/v1/auth/login", _model(TokenResponse), json=body, authenticated=False)


def refresh(refresh_token: str) -> Call[TokenResponse]:
    body = {"refresh_token": refresh_token}
    return Call("POST", "/api/v1/auth/refresh", _model(TokenResponse), json=body,
                authenticated=False)  # fmt: skip


def logout() -> Call[None]:
    return Call("POST", "/api/v1/auth/logout", _nothing)


def me() -> Call[CallerView]:
    return Call("GET", "/api/v1/auth/me", _model(CallerView))


# --- runs --------------------------------------------------------------------------------------


def _triggered(response: httpx.Response) -> TriggeredRun | FinishedRun:
    # 200: `wait` saw the run end; 202: queued, or still going when `wait` ran out.
    kind = FinishedRun if response.status_code == 200 else TriggeredRun
    return kind.model_validate_json(response.content)


def trigger(
    name: str,
    data: dict[str, Any] | None,
    *,
    wait: float | None,
    version: int | None,
    priority: int | None,
    idempotency_key: str | None,
    timeout: float,
) -> Call[TriggeredRun | FinishedRun]:
    body: dict[str, Any] = {"workflow_name": name, "data": data or {}}
    if version is not None:
        body["version"] = version
    if priority is not None:
        body["priority"] = priority
    return Call(
        "POST", "/api/v1/workflows/trigger", _triggered, params={"wait": wait}, json=body,
        headers={"Idempotency-Key": idempotency_key} if idempotency_key else {},
        timeout=None if wait is None else timeout + wait + WAIT_MARGIN,
    )  # fmt: skip


def status(run_id: RunId) -> Call[RunStatus]:
    return Call("GET", f"{_run(run_id)}/status", _model(RunStatus))


def results(run_id: RunId) -> Call[RunResults]:
    return Call("GET", f"{_run(run_id)}/results", _model(RunResults))


def runs(
    *, status: str | None, workflow_name: str | None, limit: int | None, cursor: str | None
) -> Call[Page[RunSummary]]:
    params = {"status": status, "workflow_name": workflow_name, "limit": limit, "cursor": cursor}
    return Call("GET", "/api/v1/workflows", _page(RunSummary), params=params)


def cancel(run_id: RunId) -> Call[RunSummary]:
    return Call("POST", f"{_run(run_id)}/cancel", _model(RunSummary))


def retry(run_id: RunId) -> Call[RunSummary]:
    return Call("POST", f"{_run(run_id)}/retry", _model(RunSummary))


def log_page(run_id: RunId, after: str | None) -> Call[Page[LogEntryView]]:
    params = {"after": after, "limit": LOG_PAGE}
    return Call("GET", f"{_run(run_id)}/logs", _page(LogEntryView), params=params)


def log_stream(run_id: RunId, after: str | None) -> Call[None]:
    params = {"follow": "true", "after": after}
    return Call("GET", f"{_run(run_id)}/logs", _nothing, params=params,
                timeout=STREAM_READ_TIMEOUT)  # fmt: skip


def event_stream(
    *,
    aggregate_id: str | None,
    aggregate_type: str | None,
    event_type_prefix: str | None,
    after: int | None,
) -> Call[None]:
    params = {"aggregate_id": aggregate_id, "aggregate_type": aggregate_type,
              "event_type_prefix": event_type_prefix, "after": after}  # fmt: skip
    return Call("GET", "/api/v1/events/stream", _nothing, params=params,
                timeout=STREAM_READ_TIMEOUT)  # fmt: skip


# --- approvals ---------------------------------------------------------------------------------

UNSET: Any = object()


def approve(run_id: RunId, step: str, comment: str | None, data: Any) -> Call[DecisionView]:
    body: dict[str, Any] = {"step": step, "comment": comment}
    if data is not UNSET:
        body["data"] = data
    return Call("POST", f"{_run(run_id)}/approve", _model(DecisionView), json=body)


def reject(run_id: RunId, step: str, comment: str | None) -> Call[DecisionView]:
    body = {"step": step, "comment": comment}
    return Call("POST", f"{_run(run_id)}/reject", _model(DecisionView), json=body)


def approvals(
    *, workflow_name: str | None, limit: int | None, cursor: str | None
) -> Call[Page[ApprovalView]]:
    params = {"workflow_name": workflow_name, "limit": limit, "cursor": cursor}
    return Call("GET", "/api/v1/approvals", _page(ApprovalView), params=params)


# --- templates ---------------------------------------------------------------------------------


def templates() -> Call[list[Template]]:
    return Call(
        "GET", "/api/v1/workflows/templates",
        lambda response: TemplateList.model_validate_json(response.content).items,
    )  # fmt: skip


def template(name: str, version: int | None) -> Call[Template]:
    return Call("GET", f"/api/v1/workflows/templates/{_segment(name)}", _model(Template),
                params={"version": version})  # fmt: skip


# --- registry ----------------------------------------------------------------------------------

REGISTRY = "/api/v1/registry"


def register_service(
    service_name: str,
    service_url: str,
    *,
    health_check_url: str | None,
    metadata: dict[str, Any] | None,
    tags: list[str] | None,
    ttl_seconds: int | None,
) -> Call[ServiceView]:
    body: dict[str, Any] = {"service_name": service_name, "service_url": service_url}
    optional = {"health_check_url": health_check_url, "metadata": metadata, "tags": tags,
                "ttl_seconds": ttl_seconds}  # fmt: skip
    body.update({k: v for k, v in optional.items() if v is not None})
    return Call("POST", f"{REGISTRY}/register", _model(ServiceView), json=body)


def services(
    *, name: str | None, status: str | None, tag: str | None, limit: int | None,
    cursor: str | None,
) -> Call[Page[ServiceView]]:  # fmt: skip
    params = {"name": name, "status": status, "tag": tag, "limit": limit, "cursor": cursor}
    return Call("GET", f"{REGISTRY}/services", _page(ServiceView), params=params)


def service(service_id: uuid.UUID | str) -> Call[ServiceView]:
    return Call("GET", f"{REGISTRY}/services/{_segment(service_id)}", _model(ServiceView))


def service_checks(service_id: uuid.UUID | str, limit: int | None) -> Call[list[ServiceCheck]]:
    return Call(
        "GET", f"{REGISTRY}/services/{_segment(service_id)}/checks",
        lambda response: ServiceCheckList.model_validate_json(response.content).items,
        params={"limit": limit},
    )  # fmt: skip


def heartbeat(service_id: uuid.UUID | str) -> Call[ServiceView]:
    return Call(
        "POST", f"{REGISTRY}/services/{_segment(service_id)}/heartbeat", _model(ServiceView)
    )


def deregister_service(service_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"{REGISTRY}/deregister/{_segment(service_id)}", _nothing)
