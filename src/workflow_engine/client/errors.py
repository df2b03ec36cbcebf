"""The client's exceptions: one class per kind of answer, each carrying the problem+json fields
the server sent (`type`, `title`, `status`, `detail`, `errors`, `retry_after`).

They are the client's own, not the server's `workflow_engine.errors`: a client used inside a
server (a node calling another engine) must not have its errors taken for the host's answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class WorkflowEngineError(Exception):
    """Base of every error the client raises. `status` is the HTTP status (None when no answer
    came); the other members are the problem document's, when the server sent one."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str = "",
        type: str = "",  # the problem document's member
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        correlation_id: str | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(f"{title}: {detail}" if title else detail)
        self.detail = detail
        self.status = status
        self.title = title
        self.type = type
        self.errors = errors
        self.retry_after = retry_after
        self.correlation_id = correlation_id
        self.instance = instance


class Unreachable(WorkflowEngineError):
    """No answer: the server could not be reached, or the connection broke (after the
    client's own retries, for streams)."""


class BadRequest(WorkflowEngineError):
    """400 and the other 4xx without a class of their own (413, 415, ...)."""


class Unauthorized(WorkflowEngineError):
    """401: no credential, or one the server no longer accepts."""


class Forbidden(WorkflowEngineError):
    """403: the credential's role lacks the permission."""


class NotFound(WorkflowEngineError):
    """404: no such run, workflow, service (in this tenant), or path."""


class Conflict(WorkflowEngineError):
    """409: not now, e.g. the results of a run that has not finished."""


class InvalidRequest(WorkflowEngineError):
    """422: a field failed validation; `errors` lists each (location, message, type)."""


class RateLimited(WorkflowEngineError):
    """429: try again after `retry_after` seconds."""


class ServerError(WorkflowEngineError):
    """5xx: the server failed (500), or is unavailable for now (503, with `retry_after`)."""


_BY_STATUS: dict[int, type[WorkflowEngineError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
}


def error_class(status: int) -> type[WorkflowEngineError]:
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, BadRequest)


def from_response(response: httpx.Response) -> WorkflowEngineError:
    """The typed error of an answer that is not a success; its body is read already."""
    problem: dict[str, Any] = {}
    try:
        document = json.loads(response.content)
        if isinstance(document, dict):
            problem = document
    except ValueError:
        pass  # not JSON (a proxy's page): the status and the text say what they can
    retry_after = problem.get("retry_after")
    if retry_after is None:
        retry_after = _seconds(response.headers.get("Retry-After"))
    return error_class(response.status_code)(
        str(problem.get("detail") or response.text[:500] or response.reason_phrase),
        status=response.status_code,
        title=str(problem.get("title") or response.reason_phrase),
        type=str(problem.get("type") or ""),
        errors=problem.get("errors"),
        retry_after=retry_after,
        correlation_id=problem.get("correlation_id") or response.headers.get("X-Correlation-ID"),
        instance=problem.get("instance"),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: we never send one
