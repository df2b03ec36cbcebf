"""Server-sent event responses: counted while open, ended cleanly at shutdown, and let go as
soon as the caller's credential is (see `auth/credential_guard.py`).

A stream let go says why in a last message, `event: closed` with `{"status": 401, "detail":
...}`, so that a client stops reconnecting with the same credential.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends

from workflow_engine.api.context import Context
from workflow_engine.api.sse import Ending, EventStreamResponse, Outlet, Producer, end
from workflow_engine.auth.credential_guard import CredentialGuard
from workflow_engine.auth.principal import Principal
from workflow_engine.bootstrap.core_services import AuthServiceProvider
from workflow_engine.events import sse_format
from workflow_engine.observability import metrics


async def get_credential_guard(context: Context) -> CredentialGuard:
    return context.service("auth", AuthServiceProvider).guard


GuardDep = Annotated[CredentialGuard, Depends(get_credential_guard)]


def event_stream(
    guard: CredentialGuard, principal: Principal, produce: Producer
) -> EventStreamResponse:
    async def guarded(ending: Ending, outlet: Outlet) -> None:
        with guard.guarding(principal) as closing, metrics.subscribing():
            # One future for the producer to watch: the credential's end is the stream's.
            closing.add_done_callback(lambda closed: end(ending, closed.result()))
            await produce(ending, outlet)
            if closing.done():
                detail = {"status": 401, "detail": closing.result()}
                await outlet.write(sse_format.message(json.dumps(detail), event="closed"))

    return EventStreamResponse(guarded)
