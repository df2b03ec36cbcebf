"""A typed Python client of a workflow-engine server's API, sync (`Client`) and async
(`AsyncClient`), over httpx.

    from workflow_engine.client import Client

    with Client("http://localhost:8080", api_key="wek_...") as client:
        run = client.trigger("order_summary", {"customer": "Ada", "items": []}, wait=10)
        print(run.status)

Answers are the server's own response models (`workflow_engine.schemas`); errors are the
typed exceptions of `workflow_engine.client.errors`, carrying the problem+json fields. Importing
the client loads neither FastAPI nor SQLAlchemy nor the engine.
"""

from __future__ import annotations

from workflow_engine.client._async import AsyncClient
from workflow_engine.client._sync import Client
from workflow_engine.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unreachable,
    WorkflowEngineError,
)
from workflow_engine.schemas.approvals import ApprovalView, DecisionView
from workflow_engine.schemas.events import EventView
from workflow_engine.schemas.pages import Page
from workflow_engine.schemas.registry import ServiceCheck, ServiceView
from workflow_engine.schemas.runs import (
    FinishedRun,
    LogEntryView,
    RunResults,
    RunStatus,
    RunSummary,
    TriggeredRun,
)
from workflow_engine.schemas.workflows import Template

__all__ = [
    "ApprovalView",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "DecisionView",
    "EventView",
    "FinishedRun",
    "Forbidden",
    "InvalidRequest",
    "LogEntryView",
    "NotFound",
    "Page",
    "RateLimited",
    "RunResults",
    "RunStatus",
    "RunSummary",
    "ServerError",
    "ServiceCheck",
    "ServiceView",
    "Template",
    "TriggeredRun",
    "Unauthorized",
    "Unreachable",
    "WorkflowEngineError",
]
