"""Server-sent event responses: counted while open, ended cleanly at shutdown, and let go as
soon as the caller's credential is (see `auth/credential_guard.py`).

A stream let go says why in a last message, `event: closed` with `{"status": 401, "detail":
...}`, so that a client stops reconnecting with the same credential.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
from fastapi import Depends
from sse_starlette import EventSourceResponse, ServerSentEvent

from workflow_engine.api.context import Context
from workflow_engine.auth.credential_guard import Closing, CredentialGuard
from workflow_engine.auth.principal import Principal
from workflow_engine.bootstrap.core_services import AuthServiceProvider
from workflow_engine.observability import metrics

Message = bytes | ServerSentEvent
#: Makes a stream's messages; it must return once `stop` is set or `closing` is done.
Producer = Callable[[anyio.Event, Closing], AsyncIterator[Message]]

PING_SECONDS = 15
SEND_TIMEOUT = 30
SHUTDOWN_GRACE = 2


async def get_credential_guard(context: Context) -> CredentialGuard:
    return context.service("auth", AuthServiceProvider).guard


GuardDep = Annotated[CredentialGuard, Depends(get_credential_guard)]


def event_stream(
    guard: CredentialGuard, principal: Principal, produce: Producer
) -> EventSourceResponse:
    stop = anyio.Event()  # set by sse-starlette when the server begins to shut down

    async def messages() -> AsyncIterator[Message]:
        with guard.guarding(principal) as closing, metrics.subscribing():
            async for message in produce(stop, closing):
                yield message
            if closing.done():
                detail = {"status": 401, "detail": closing.result()}
                yield ServerSentEvent(event="closed", data=json.dumps(detail))

    return EventSourceResponse(
        messages(), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT,
        shutdown_event=stop, shutdown_grace_period=SHUTDOWN_GRACE,
    )  # fmt: skip
