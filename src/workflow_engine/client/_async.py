"""`AsyncClient`: the API from asyncio code, over httpx. The twin of `_sync.py`, method for
method; both carry out the calls `_calls.py` describes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import httpx

from workflow_engine.client import _calls, sse
from workflow_engine.client._auth import Session
from workflow_engine.client._calls import DEFAULT_TIMEOUT, UNSET, Call, RunId
from workflow_engine.client.errors import (
    Unauthorized,
    Unreachable,
    WorkflowEngineError,
    from_response,
)
from workflow_engine.client.sse import CredentialClosed, Disconnected, Resumption
from workflow_engine.schemas.approvals import ApprovalView, DecisionView
from workflow_engine.schemas.auth import CallerView
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
from workflow_engine.version import __version__

T = TypeVar("T")


class AsyncClient:
    """A workflow-engine server's API, for asyncio: `Client`'s methods, awaited (`logs` and
    `events` are async iterators). Give one credential: `api_key`, an access `token`, or
    `email` and `password` (logged in on first use; the token is refreshed before it expires
    and renewed when refused). Errors are `workflow_engine.client.errors` exceptions.

    Safe to share between tasks. Use it as an async context manager, or await `close()`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect_for: float = sse.RECONNECT_FOR,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._session = Session(api_key=api_key, token=token, email=email, password=password)
        self._timeout = timeout
        self._reconnect_for = reconnect_for
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport,
            headers={"User-Agent": f"workflow-engine-client/{__version__}"},
        )  # fmt: skip

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- requests ------------------------------------------------------------------------------

    async def _send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """The answer to `call`, authenticated; a refused login token is renewed once and the
        call sent again. Raises the typed error of an answer that is not a success."""
        if call.authenticated and self._session.due():
            await self._renew(self._session.generation)
        generation = self._session.generation
        response = await self._raw(call, stream=stream)
        if response.status_code == 401 and call.authenticated and self._session.renewable:
            await response.aclose()
            await self._renew(generation)
            response = await self._raw(call, stream=stream)
        if response.is_error:
            if stream:
                await response.aread()
                await response.aclose()
            raise from_response(response)
        return response

    async def _raw(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        headers = self._session.header() if call.authenticated else {}
        try:
            return await self._http.send(call.request(self._http, headers), stream=stream)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"no answer from {self._http.base_url} to {call.method} {call.path}: {exc}"
            ) from exc

    async def _call(self, call: Call[T]) -> T:
        return call.parse(await self._send(call))

    async def _renew(self, seen: int) -> None:
        async with self._lock:
            if self._session.generation != seen:
                return  # another request renewed the token while this one waited
            renewal = self._session.renewal()
            try:
                tokens = await self._call(renewal)
            except Unauthorized:
                if renewal.path != "/api/v1/auth/refresh":
                    raise
                self._session.refused()
                tokens = await self._call(self._session.renewal())
            self._session.renewed(tokens)

    # --- streams -------------------------------------------------------------------------------

    async def _stream(
        self, call: Call[None], resume: Resumption
    ) -> AsyncIterator[sse.ServerSentEvent]:
        """The stream's messages, reconnecting after a break with `Last-Event-ID`; ends when
        the server sends `end`. Deltas (streamed text, not stored) are left out."""
        while True:
            generation = self._session.generation
            try:
                response = await self._send(replace(call, headers=resume.headers()), stream=True)
                generation = self._session.generation  # the token this stream was opened with
                try:
                    resume.connected()
                    decoder = sse.Decoder()
                    async for line in response.aiter_lines():
                        message = decoder.feed(line)
                        if message is None or message.event == "delta":
                            continue
                        if message.event == "closed":
                            raise CredentialClosed(sse.closed_detail(message))
                        resume.received(message)
                        yield message
                        if message.event == "end":
                            return
                finally:
                    await response.aclose()
                raise Disconnected("the server ended the stream")
            except CredentialClosed as closed:
                if not self._session.renewable:
                    raise Unauthorized(closed.detail, status=401, title="Unauthorized") from None
                await self._renew(generation)
            except (httpx.TransportError, Disconnected, Unreachable) as exc:
                await asyncio.sleep(resume.retry_after(exc))
            except WorkflowEngineError as exc:
                if not sse.retryable(exc):
                    raise
                await asyncio.sleep(resume.retry_after(exc))

    # --- auth ----------------------------------------------------------------------------------

    async def me(self) -> CallerView:
        """Who the credential is: a user or an API key, its role and tenant."""
        return await self._call(_calls.me())

    async def logout(self) -> None:
        """Revoke the login's token and session on the server. A client made with `email` and
        `password` logs in again on its next request; an API key has no session (422)."""
        await self._call(_calls.logout())
        self._session.logged_out()

    # --- runs ----------------------------------------------------------------------------------

    async def trigger(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        version: int | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> TriggeredRun | FinishedRun:
        """Start a run of workflow `name` with input `data`. With `wait` (seconds), answer when
        the run ends — a `FinishedRun` with its `output` or `error` — or, when `wait` runs out
        first, a `TriggeredRun` (the run goes on)."""
        return await self._call(_calls.trigger(
            name, data, wait=wait, version=version, priority=priority,
            idempotency_key=idempotency_key, timeout=self._timeout,
        ))  # fmt: skip

    async def status(self, run_id: RunId) -> RunStatus:
        return await self._call(_calls.status(run_id))

    async def results(self, run_id: RunId) -> RunResults:
        """The output of a finished run (or its error); `Conflict` while it runs."""
        return await self._call(_calls.results(run_id))

    async def runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[RunSummary]:
        """One page of the tenant's runs, newest first; `next_cursor` gives the next."""
        return await self._call(_calls.runs(status=status, workflow_name=workflow_name, limit=limit,
                                      cursor=cursor))  # fmt: skip

    async def cancel(self, run_id: RunId) -> RunSummary:
        return await self._call(_calls.cancel(run_id))

    async def retry(self, run_id: RunId) -> RunSummary:
        return await self._call(_calls.retry(run_id))

    async def logs(
        self, run_id: RunId, *, follow: bool = False, after: str | None = None
    ) -> AsyncIterator[LogEntryView]:
        """The run's log entries, oldest first (after entry id `after`). With `follow`, goes
        on as entries are written until the run has ended, resuming after a disconnect (or a
        server restart) exactly after the last entry received."""
        if not follow:
            while True:
                page = await self._call(_calls.log_page(run_id, after))
                for entry in page.items:
                    yield entry
                if page.next_cursor is None:
                    return
                after = page.next_cursor
        resume = Resumption(reconnect_for=self._reconnect_for)
        async for message in self._stream(_calls.log_stream(run_id, after), resume):
            if message.event != "end":
                yield LogEntryView.model_validate_json(message.data)

    async def events(
        self,
        *,
        aggregate_id: str | None = None,
        aggregate_type: str | None = None,
        event_type_prefix: str | None = None,
        after: int | None = None,
    ) -> AsyncIterator[EventView]:
        """The tenant's events as they are appended (after position `after`, or from now),
        for ever, resuming after a disconnect exactly after the last event received."""
        call = _calls.event_stream(aggregate_id=aggregate_id, aggregate_type=aggregate_type,
                                   event_type_prefix=event_type_prefix, after=after)  # fmt: skip
        async for message in self._stream(call, Resumption(reconnect_for=self._reconnect_for)):
            yield EventView.model_validate_json(message.data)

    # --- approvals -----------------------------------------------------------------------------

    async def approve(
        self, run_id: RunId, step: str, *, comment: str | None = None, data: Any = UNSET
    ) -> DecisionView:
        """Approve what the run's `approval` step waits for; `data` replaces its proposal."""
        return await self._call(_calls.approve(run_id, step, comment, data))

    async def reject(self, run_id: RunId, step: str, *, comment: str | None = None) -> DecisionView:
        return await self._call(_calls.reject(run_id, step, comment))

    async def approvals(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ApprovalView]:
        """What waits for a decision in the tenant, oldest first."""
        return await self._call(_calls.approvals(workflow_name=workflow_name, limit=limit,
                                           cursor=cursor))  # fmt: skip

    # --- templates -----------------------------------------------------------------------------

    async def templates(self) -> list[Template]:
        """The workflows the server can run, latest version of each."""
        return await self._call(_calls.templates())

    async def template(self, name: str, *, version: int | None = None) -> Template:
        return await self._call(_calls.template(name, version))

    # --- registry ------------------------------------------------------------------------------

    async def register_service(
        self,
        service_name: str,
        service_url: str,
        *,
        health_check_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        ttl_seconds: int | None = None,
    ) -> ServiceView:
        """Register an instance (the same name and URL again updates it)."""
        return await self._call(_calls.register_service(
            service_name, service_url, health_check_url=health_check_url, metadata=metadata,
            tags=tags, ttl_seconds=ttl_seconds,
        ))  # fmt: skip

    async def services(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ServiceView]:
        return await self._call(_calls.services(name=name, status=status, tag=tag, limit=limit,
                                          cursor=cursor))  # fmt: skip

    async def service(self, service_id: uuid.UUID | str) -> ServiceView:
        return await self._call(_calls.service(service_id))

    async def service_checks(
        self, service_id: uuid.UUID | str, *, limit: int | None = None
    ) -> list[ServiceCheck]:
        """The service's latest health checks, newest first (`limit`: 1 to 500, 100 unless
        given)."""
        return await self._call(_calls.service_checks(service_id, limit))

    async def heartbeat(self, service_id: uuid.UUID | str) -> ServiceView:
        """Say the instance is alive (resets its TTL)."""
        return await self._call(_calls.heartbeat(service_id))

    async def deregister_service(self, service_id: uuid.UUID | str) -> None:
        await self._call(_calls.deregister_service(service_id))
