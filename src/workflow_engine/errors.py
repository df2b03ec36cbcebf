"""The domain's exceptions. `api.problems` is the one place that turns them into HTTP answers."""

from __future__ import annotations

import math
from typing import Any


class WorkflowEngineError(Exception):
    """Base of every error the engine raises on purpose."""

    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class InvalidInput(WorkflowEngineError):
    status = 422
    title = "Invalid input"


class NotFound(WorkflowEngineError):
    status = 404
    title = "Not Found"


class Conflict(WorkflowEngineError):
    status = 409
    title = "Conflict"


class ConcurrencyConflict(Conflict):
    """An append named an expected version that is no longer the aggregate's current one."""

    title = "Version conflict"

    def __init__(self, aggregate_id: str, expected: int | None, actual: int) -> None:
        super().__init__(
            f"aggregate {aggregate_id!r} is at version {actual}, not the expected {expected}"
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class Unauthorized(WorkflowEngineError):
    """No credential, or one we cannot accept. Carries the challenge RFC 6750 asks for."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, *, invalid_token: bool = True) -> None:
        challenge = 'Bearer realm="workflow-engine"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(WorkflowEngineError):
    status = 403
    title = "Forbidden"


class TooManyRequests(WorkflowEngineError):
    """Try again later; `retry_after` says when (seconds, possibly fractional)."""

    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})
        self.retry_after = retry_after


class ServiceUnavailable(WorkflowEngineError):
    status = 503
    title = "Service Unavailable"
