"""Server-sent event responses: counted while open, ended cleanly at shutdown, and let go as
soon as the caller's credential is (see `auth/credential_guard.py`).

A stream let go says why in a last message, `event: closed` with `{"status": 401, "detail":
...}`, so that a client stops reconnecting with the same credential.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

from fastapi import Depends
from starlette.types import Receive, Scope, Send

from workflow_engine.api.context import Context
from workflow_engine.api.sse import Ending, EventStreamResponse, Outlet, Producer, end
from workflow_engine.auth.credential_guard import CredentialGuard
from workflow_engine.auth.principal import Principal
from workflow_engine.bootstrap.core_services import AuthServiceProvider
from workflow_engine.errors import TooManyRequests
from workflow_engine.events import sse_format
from workflow_engine.observability import metrics

#: Streams one caller (a user's session or an API key) may hold open in one process. Each
#: holds a connection, a task and a follower for as long as the client likes; without a cap
#: one credential could open them until the process runs out of file descriptors.
MAX_STREAMS_PER_PRINCIPAL = 16
_open_by_principal: Counter[str] = Counter()


async def get_credential_guard(context: Context) -> CredentialGuard:
    return context.service("auth", AuthServiceProvider).guard


GuardDep = Annotated[CredentialGuard, Depends(get_credential_guard)]


def _holder(principal: Principal) -> str:
    # Per session for users: the streams of one login, not of every device of the account.
    session = principal.session
    return f"{principal.actor}:{session.session_id}" if session is not None else principal.actor


class _CountedStream(EventStreamResponse):
    """A stream whose place under its caller's cap is taken when it is made (before any
    await, so concurrent opens cannot all pass the check) and given back however it ends."""

    def __init__(self, produce: Producer, holder: str) -> None:
        super().__init__(produce)
        self._holder: str | None = holder
        _open_by_principal[holder] += 1

    def _release(self) -> None:
        if self._holder is not None:
            _open_by_principal[self._holder] -= 1
            if _open_by_principal[self._holder] <= 0:
                del _open_by_principal[self._holder]
            self._holder = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()

    def __del__(self) -> None:  # a response made but never sent still gives its place back
        self._release()


def event_stream(
    guard: CredentialGuard, principal: Principal, produce: Producer
) -> EventStreamResponse:
    holder = _holder(principal)
    if _open_by_principal[holder] >= MAX_STREAMS_PER_PRINCIPAL:
        raise TooManyRequests(
            f"{MAX_STREAMS_PER_PRINCIPAL} streams are open with this credential already; "
            "close one (or resume it with Last-Event-ID) before opening another",
            retry_after=5,
        )

    async def guarded(ending: Ending, outlet: Outlet) -> None:
        with guard.guarding(principal) as closing, metrics.subscribing():
            # One future for the producer to watch: the credential's end is the stream's.
            closing.add_done_callback(lambda closed: end(ending, closed.result()))
            await produce(ending, outlet)
            if closing.done():
                detail = {"status": 401, "detail": closing.result()}
                await outlet.write(sse_format.message(json.dumps(detail), event="closed"))

    return _CountedStream(guarded, holder)
