"""The body of every error answer: RFC 9457 problem details (`api/problems.py` writes them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One field that failed validation."""

    loc: list[str | int] = Field(description="Where the field is: body, query, path or header.")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:workflow-engine:problem:not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "No route matches GET /api/v1/nothing-here",
                    "instance": "/api/v1/nothing-here",
                    "correlation_id": "5f0c1c55-1f6f-4a43-9e57-0b8b0f0e4a51",
                }
            ]
        }
    )

    type: str = Field(description="A URN naming the kind of problem; stable across versions.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The request path.")
    correlation_id: str | None = Field(
        None, description="Same as the X-Correlation-ID header; quote it in bug reports."
    )
    errors: list[FieldError] | None = Field(None, description="Per-field validation errors.")
    retry_after: float | None = Field(
        None, description="On 429: seconds until a retry may pass (`Retry-After` rounds it up)."
    )
