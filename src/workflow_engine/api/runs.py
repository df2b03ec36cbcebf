"""Workflow runs over HTTP, on the seed's paths: trigger, status, results, cancel, and a list."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from workflow_engine.api.context import Context, DeltasDep, LogTailDep, RunsDep, RunWaiterDep
from workflow_engine.api.pagination import (
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    page_response,
)
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import Origin, require
from workflow_engine.api.sse import Ending, Outlet
from workflow_engine.api.streams import GuardDep, event_stream
from workflow_engine.api.validation import Moment, utc_moment
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.engine import replays, run_reads, runs, states
from workflow_engine.engine.definitions import NAME_PATTERN, STEP_ID_PATTERN
from workflow_engine.engine.deltas import DeltaHub, Subscription
from workflow_engine.engine.output_usage import llm_usage
from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_logs import LogEntry
from workflow_engine.engine.runs import RunService
from workflow_engine.engine.states import RUN_FINISHED
from workflow_engine.errors import Conflict, InvalidInput
from workflow_engine.events import sse_format
from workflow_engine.events.notifier import FOLLOW_TIMEOUT
from workflow_engine.events.tail import LogTail
from workflow_engine.schemas.runs import (
    FinishedRun,
    LLMUsage,
    LogEntryView,
    Progress,
    ReplayedRun,
    ReplayOf,
    RunLinks,
    RunResults,
    RunStatus,
    RunSummary,
    TriggeredRun,
)

router = resource_router(tags=["workflows"])
T = TypeVar("T")

RUN_STATUSES = f"^({'|'.join(states.RunStatus)})$"
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as Stripe's keys
ENTRY_ID = re.compile(r"(?P<position>[0-9]{1,19})\.(?P<index>[0-9]{1,6})")


class TriggerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow_name": "order_summary",
                    "data": {"customer": "Ada Lovelace",
                             "items": [{"name": "Manual", "amount": 12.5}]},
                }
            ]
        },
    )  # fmt: skip

    workflow_name: str = Field(pattern=NAME_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict, description="Checked against the schema.")
    version: int | None = Field(None, ge=1, le=1_000_000, description="Latest when absent.")
    idempotency_key: str | None = Field(
        None, pattern=IDEMPOTENCY_KEY, description="Or the `Idempotency-Key` header."
    )
    priority: int = Field(
        0, ge=-100, le=100,
        description="Steps of runs with a higher priority are started first when work waits.",
    )  # fmt: skip


def _links(run_id: uuid.UUID) -> RunLinks:
    base = f"/api/v1/workflows/{run_id}"
    return RunLinks(
        status=f"{base}/status", results=f"{base}/results", logs=f"{base}/logs",
        cancel=f"{base}/cancel", retry=f"{base}/retry", events=f"/api/v1/events/{run_id}",
    )  # fmt: skip


_NO_RUN = str(uuid.UUID(int=0))
# The models render these, once: a status splices them in after the database's part.
_LINKS_JSON = _links(uuid.UUID(int=0)).model_dump_json()
_NO_LLM_USAGE = LLMUsage.model_validate(llm_usage([])).model_dump_json()


def _usage_json(outputs: list[Any]) -> str:
    if not outputs:
        return _NO_LLM_USAGE
    return LLMUsage.model_validate(llm_usage(outputs)).model_dump_json()


def run_answer(run: RunRecord, *, outcome: bool = True) -> TriggeredRun | FinishedRun:
    """A triggered run as the trigger answers it: with its outcome when it has finished and
    `outcome` is asked for (the trigger's `wait`)."""
    if outcome and run.status in RUN_FINISHED:
        return FinishedRun(
            workflow_id=run.id, workflow_name=run.workflow_name, version=run.workflow_version,
            status=run.status, created_at=run.created_at, links=_links(run.id),
            finished_at=run.finished_at, output=run.output, error=run.error,
        )  # fmt: skip
    return TriggeredRun(
        workflow_id=run.id, workflow_name=run.workflow_name, version=run.workflow_version,
        status=run.status, created_at=run.created_at, links=_links(run.id),
    )  # fmt: skip


def status_body(found: run_reads.StatusDocument, run_id: uuid.UUID) -> str:
    """A run's status document as JSON: the database rendered every member up to `error`;
    the last two follow it."""
    usage = _usage_json(found.llm_outputs)
    links = _LINKS_JSON.replace(_NO_RUN, str(run_id))
    return f'{found.document[:-1]},"llm_usage":{usage},"links":{links}}}'


def run_summary(run: RunRecord) -> RunSummary:
    return RunSummary(
        workflow_id=run.id, workflow_name=run.workflow_name, version=run.workflow_version,
        status=run.status, created_at=run.created_at, finished_at=run.finished_at,
        progress=_progress(run),
    )  # fmt: skip


def _progress(run: RunRecord) -> Progress:
    return Progress(completed=run.steps_done, total=run.steps_total)


async def wait_seconds(
    context: Context,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Seconds to wait for the run to end (fractions allowed), at most "
            "`TRIGGER_WAIT_MAX_SECONDS` (60 unless configured): 200 with the finished run as "
            "soon as it ends, or the usual 202 when the time runs out.",
        ),
    ] = None,
) -> float | None:
    """`wait`, checked against the configured cap like the static bounds are (the same 422)."""
    cap = context.settings.trigger_wait_max_seconds
    if wait is not None and wait > cap:
        raise RequestValidationError([
            {"loc": ("query", "wait"), "type": "less_than_equal", "input": wait,
             "msg": f"Input should be less than or equal to {cap:g} (TRIGGER_WAIT_MAX_SECONDS)"},
        ])  # fmt: skip
    return wait


WaitSeconds = Annotated[float | None, Depends(wait_seconds)]


@router.post(
    "/api/v1/workflows/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a workflow run",
    response_model=None,
    responses={
        202: {"model": TriggeredRun, "description": "Queued; or still going when `wait` ran out"},
        200: {"model": FinishedRun, "description": "With `wait`: the run ended within it"},
        404: {"description": "No workflow of this name (or version); the detail names them"},
    },
)
async def trigger(
    body: TriggerRequest,
    principal: Annotated[Principal, require(Permission.workflows_run)],
    service: RunsDep,
    waiter: RunWaiterDep,
    origin: Origin,
    request: Request,
    response: Response,
    wait: WaitSeconds = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY)
    ] = None,
) -> TriggeredRun | FinishedRun:
    """Accepted runs are queued at once; follow `links.status`, or the run's events. The same
    `Idempotency-Key` with the same body returns the first run (`Idempotent-Replayed: true`);
    with another body it is a 422. With `wait`, the answer comes when the run ends (200, with
    its `output` or `error`) or when `wait` seconds have passed (202); the run goes on either
    way, and also when the client goes away."""
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise InvalidInput("the Idempotency-Key header and `idempotency_key` differ")
    run, created = await service.trigger(
        principal.tenant_id, body.workflow_name, body.data, version=body.version,
        idempotency_key=idempotency_key or body.idempotency_key,
        origin=runs.Origin(principal.actor, origin.correlation_id), priority=body.priority,
    )  # fmt: skip
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    if wait is not None:
        run = await until_disconnected(
            request, waiter.until_finished(principal.tenant_id, run, wait), run
        )
        if run.status in RUN_FINISHED:
            response.status_code = status.HTTP_200_OK
    return run_answer(run, outcome=wait is not None)


async def until_disconnected(request: Request, waiting: Awaitable[T], otherwise: T) -> T:
    """What `waiting` returns, or `otherwise` as soon as the client disconnects (`waiting` is
    cancelled then: only the waiting stops, whatever it waited for goes on)."""
    answer = otherwise
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            # The body has been read: the server's next message is the disconnect (or
            # `http.disconnect` once the answer was sent, when this is cancelled anyway).
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch)
        answer = await waiting
        group.cancel_scope.cancel()
    return answer


@router.get(
    "/api/v1/workflows", summary="Runs, newest first, filtered", response_model=Page[RunSummary]
)
async def list_runs(
    principal: Annotated[Principal, require(Permission.workflows_read)],
    service: RunsDep,
    status_is: Annotated[str | None, Query(alias="status", pattern=RUN_STATUSES)] = None,
    workflow_name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    key = decode_cursor(cursor, created_at=str, id=str)
    before = None
    if key is not None:
        try:
            created = datetime.fromisoformat(key["created_at"])
            before = (utc_moment(created), uuid.UUID(key["id"]))
            if created.tzinfo is None:
                raise ValueError("naive")
        except ValueError:
            raise InvalidInput("the cursor is not one this server issued") from None
    page = await service.run_page(
        principal.tenant_id, status=status_is, workflow_name=workflow_name, since=since,
        until=until, before=before, limit=limit,
    )  # fmt: skip
    next_cursor = None
    if page.next_key is not None:
        created_at, run_id = page.next_key
        next_cursor = encode_cursor({"created_at": created_at.isoformat(), "id": str(run_id)})
    return page_response(page.items, next_cursor)


@router.get(
    "/api/v1/workflows/{workflow_id}/status",
    summary="A run's status and its steps",
    response_model=RunStatus,
)
async def run_status(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, require(Permission.workflows_read)],
    service: RunsDep,
) -> Response:
    found = await service.status(principal.tenant_id, workflow_id)
    return Response(status_body(found, workflow_id), media_type="application/json")


@router.get("/api/v1/workflows/{workflow_id}/results", summary="A finished run's output")
async def run_results(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, require(Permission.workflows_read)],
    service: RunsDep,
) -> RunResults:
    """200 with the output when completed, or with the error (and failing step) when failed
    or cancelled; 409 while the run has not finished."""
    run = await service.get(principal.tenant_id, workflow_id)
    if run.status not in RUN_FINISHED:
        raise Conflict(f"run {run.id} has not finished: it is {run.status}")
    return RunResults(workflow_id=run.id, status=run.status, output=run.output, error=run.error)


@router.post(
    "/api/v1/workflows/{workflow_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a run",
)
async def cancel_run(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, require(Permission.workflows_run)],
    service: RunsDep,
    origin: Origin,
) -> RunSummary:
    """Steps not started never start; running steps are interrupted within about a second;
    the run ends `cancelled`. Cancelling again is harmless; a finished run is a 409."""
    run = await service.cancel(
        principal.tenant_id, workflow_id, runs.Origin(principal.actor, origin.correlation_id)
    )
    return run_summary(run)


@router.post(
    "/api/v1/workflows/{workflow_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a failed or cancelled run from where it stopped",
    responses={409: {"description": "The run is not failed or cancelled, or still stopping"}},
)
async def retry_run(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, require(Permission.workflows_run)],
    service: RunsDep,
    origin: Origin,
) -> RunSummary:
    """The steps that did not complete run again, each with its next attempt number; those
    that completed keep their outputs and do not run again. A `WorkflowRetried` event records
    who retried and which steps. 409 for a run that is not failed or cancelled, or whose
    stopped steps' workers have not reported yet."""
    run = await service.retry(
        principal.tenant_id, workflow_id, runs.Origin(principal.actor, origin.correlation_id)
    )
    return run_summary(run)


StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]


class ReplayOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] | None = Field(
        None, description="Replaces the run's input; checked against the input schema."
    )
    version: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Run this version of the workflow (from this server's catalog) instead of "
        "the one the original ran.",
    )  # fmt: skip
    model: str | None = Field(
        None, min_length=1, max_length=200,
        description="The `model` of every LLM step (`llm.*`) that runs again.",
    )  # fmt: skip
    steps: dict[StepId, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per step that runs again, arguments merged into its `with` (a new "
        "`prompt` or `system`, say).",
    )


class ReplayRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"from_step": "draft",
                          "overrides": {"steps": {"draft": {"system": "Answer in French."}}}}]
        },
    )  # fmt: skip

    from_step: str = Field(
        pattern=STEP_ID_PATTERN,
        description="It, the steps that did not complete and every step depending on those "
        "run again; the others' outputs are reused.",
    )
    overrides: ReplayOverrides = Field(default_factory=ReplayOverrides)


@router.post(
    "/api/v1/workflows/{workflow_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Replay a run from a step, reusing the outputs of the steps before it",
    responses={409: {"description": "The run has not finished"},
               422: {"description": "An unknown step, or overrides that do not fit"}},
)  # fmt: skip
async def replay_run(
    workflow_id: uuid.UUID,
    body: ReplayRequest,
    principal: Annotated[Principal, require(Permission.workflows_run)],
    service: RunsDep,
    origin: Origin,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY)
    ] = None,
) -> ReplayedRun:
    """Starts a new run of the same workflow, linked to this one, that executes from
    `from_step`: the steps before it complete at once with the outputs this run recorded (no
    node runs, so no LLM or MCP call is made again), the rest run as in any run. The same
    `Idempotency-Key` with the same body returns the first replay (`Idempotent-Replayed:
    true`). 409 while this run has not finished."""
    overrides = replays.Overrides(
        input=body.overrides.input, version=body.overrides.version, model=body.overrides.model,
        steps=body.overrides.steps,
    )  # fmt: skip
    run, created = await service.replay(
        principal.tenant_id, workflow_id, body.from_step, overrides,
        idempotency_key=idempotency_key,
        origin=runs.Origin(principal.actor, origin.correlation_id),
    )  # fmt: skip
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return ReplayedRun(
        workflow_id=run.id, workflow_name=run.workflow_name, version=run.workflow_version,
        status=run.status, created_at=run.created_at, links=_links(run.id),
        replay_of=ReplayOf(workflow_id=workflow_id, from_step=run.replay_from_step or ""),
        reused=[s.step_id for s in run.steps
                if s.status == states.StepStatus.completed and s.attempts == 0],
    )  # fmt: skip


def _entry(entry: LogEntry) -> LogEntryView:
    return LogEntryView(
        id=entry.id, time=entry.logged_at, level=entry.level, step=entry.step_id,
        attempt=entry.attempt, message=entry.message, fields=entry.fields,
    )  # fmt: skip


def entry_id(value: str | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    match = ENTRY_ID.fullmatch(value)
    if match is None or int(match["position"]) > 2**63 - 1:
        raise InvalidInput(f"{name} must be a log entry id such as 42.0")
    return int(match["position"]), int(match["index"])


@router.get(
    "/api/v1/workflows/{workflow_id}/logs",
    summary="A run's log: its nodes' entries and its lifecycle, in order",
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "A page, or with `follow=true` a stream"}},
)  # fmt: skip
async def run_logs(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, require(Permission.workflows_read)],
    service: RunsDep,
    tail: LogTailDep,
    guard: GuardDep,
    deltas: DeltasDep,
    after: Annotated[str | None, Query(max_length=40, description="An entry id.")] = None,
    limit: Limit = 100,
    follow: bool = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> Any:
    """Entries with stable ids, oldest first. `follow=true` streams them as server-sent events
    (`id` = entry id, `event` = level) until the run ends, resuming after `Last-Event-ID`; a
    stream whose credential expires or is revoked ends with a `closed` message. While a step
    streams its text (`llm.chat` with `stream: true`) the stream shows it as `delta` messages
    with no `id`, `{run_id, step_id, attempt, seq, text}`: not stored, not replayed on
    resuming; the step's output holds the whole text."""
    start = entry_id(last_event_id, "Last-Event-ID") or entry_id(after, "after")
    if not follow:
        page = await service.log_page(principal.tenant_id, workflow_id, after=start, limit=limit)
        return page_response(page.items, page.next_key)
    run = await service.get(principal.tenant_id, workflow_id)  # 404 before the stream starts
    return event_stream(
        guard, principal,
        lambda ending, outlet: follow_log(service, tail, principal.tenant_id, run.id, start,
                                          ending, outlet, deltas),
    )  # fmt: skip


async def follow_log(
    service: RunService,
    tail: LogTail,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    after: tuple[int, int] | None,
    ending: Ending,
    outlet: Outlet,
    deltas: DeltaHub | None = None,
) -> None:
    """Writes the entries as they are written, until the run has ended and its last entry was
    sent (or the stream ends: the client went away, the server stops, or the caller's
    credential is let go).

    The entries come from the read model; the shared tail says when to look again, and only
    when it holds a new event of this run (or fell out of reach), so a thousand followers of
    quiet runs cost no queries. With `deltas`, the run's streamed text is written too, as it
    comes and before the entries read after it (`engine/deltas.py`)."""
    with tail.following(), contextlib.ExitStack() as stack:
        run_deltas = None
        if deltas is not None:
            run_deltas = stack.enter_context(deltas.subscribe(tenant_id, run_id, ending))
        await _follow_log(service, tail, tenant_id, run_id, after, ending, outlet, run_deltas)


async def _follow_log(
    service: RunService,
    tail: LogTail,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    after: tuple[int, int] | None,
    ending: Ending,
    outlet: Outlet,
    deltas: Subscription | None,
) -> None:
    aggregate = str(run_id)
    watched = tail.end
    bell = ending if deltas is None else deltas.bell  # a delta wakes the wait, as an end does
    while not ending.done():
        if deltas is not None and deltas.pending:  # published before what is read next
            await outlet.write(deltas.take())
        seen = tail.generation
        run, entries = await service.logs(tenant_id, run_id, after=after, limit=500)
        for entry in entries:
            if ending.done():
                return
            after = (entry.position, entry.entry)
            await outlet.write(
                sse_format.message(_entry(entry).model_dump_json(), id=entry.id, event=entry.level)
            )
        if len(entries) == 500:
            continue
        if run.status in RUN_FINISHED and not await service.holds_steps(tenant_id, run_id):
            # Says so, so that a browser's EventSource does not reconnect for ever.
            await outlet.write(sse_format.message(json.dumps({"status": run.status}), event="end"))
            return
        while not ending.done():
            if deltas is not None:
                if deltas.pending:
                    await outlet.write(deltas.take())
                bell = deltas.bell
            woken = await tail.wait(seen, FOLLOW_TIMEOUT, unless=bell)
            seen = tail.generation
            recent = tail.since(watched) if watched is not None else None
            if recent is None or not woken:
                watched = tail.end
                break  # out of reach, or a second passed: look at the read model
            if recent:
                watched = recent[-1].key
            if any(event.aggregate_id == aggregate for event in recent):
                break
