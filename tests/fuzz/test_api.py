"""Every operation of /api/v1/openapi.json fuzzed as every principal (see docs/api.md#fuzzing).

Each case is sent as one principal and its response checked against the document: no 5xx, a
documented status, content type, headers and body. A case is one of
- `raw`: what schemathesis generated from the schema, as it is;
- `ids`: the same, with the ids it names replaced by real ones (a run, a schedule, ...);
- `valid`: real ids and a body and query the server should accept;
- `negative`: data that breaks the schema, which must be refused with a 4xx.
A principal whose role has the operation's permission must get a 2xx in at least
`MIN_SUCCESS_SHARE` of its non-negative cases (so a run that only meets 401s, 403s and 422s
fails); one without it must never get a 2xx.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import GenerationConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.conftest import (
    MAX_EXAMPLES,
    ORDER,
    PASSWORD,
    PRINCIPALS,
    SEED,
    Principal,
    World,
    build_app,
)
from workflow_engine.auth.permissions import Permission, Role

# schemathesis's own strategies draw from `random` (its issue, not a test's): Hypothesis
# warns about it once per operation.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

MIN_SUCCESS_SHARE = 0.2

# Streams (`/events/stream`, `/logs?follow=true`) never end on their own while runs go on:
# each call keeps what arrived within this deadline (and at most 3 events).
STREAM_SECONDS = 1.0
STREAMS = {"stream_events", "run_logs"}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

CREDENTIAL_HEADERS = {"authorization", "x-api-key"}

# Drawn per case (see the module's docstring); `valid` twice, so that every operation meets
# enough cases the server should accept even at CI's eight examples.
KINDS = ["raw", "ids", "valid", "valid", "negative"]


def _operations() -> list[tuple[str, Permission | None]]:
    """The document's operations (id, permission), read from an app that is never started, so
    an operation added to the API is fuzzed without a change here."""
    with tempfile.TemporaryDirectory() as scratch:
        app = build_app(f"sqlite:///{scratch}/unused.db", Path(scratch), serving=False)
        document = app.openapi()
    found = []
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            scopes = {s for r in operation.get("security") or [] for v in r.values() for s in v}
            assert len(scopes) <= 1, operation["operationId"]
            found.append((operation["operationId"], Permission(scopes.pop()) if scopes else None))
    return found


OPERATIONS = _operations()


# --- what makes a case name real things --------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]
Assist = Callable[[World, Any, Draw, bool], None]


def _body(case: Any) -> dict[str, Any]:
    if not isinstance(case.body, dict):
        case.body = {}
    return dict(case.body)


def _drop(mapping: dict[str, Any] | None, *names: str) -> None:
    for name in names:
        if mapping is not None:
            mapping.pop(name, None)


def _api_key(world: World, case: Any, draw: Draw, valid: bool) -> None:
    if valid:
        expiry = draw(st.sampled_from([None, 1, 90, 3650]))
        case.body = {"name": world.unique("key"), "role": draw(st.sampled_from(list(Role)))}
        if expiry:
            case.body["expires_in_days"] = expiry


def _revoke_key(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["key_id"] = world.api_key()[0]


def _login(world: World, case: Any, draw: Draw, valid: bool) -> None:
    email = world.emails["login"]
    body = _body(case)
    _drop(body, "email", "username")
    body[draw(st.sampled_from(["email", "username"]))] = email
    if valid:
        body["password"] = PASSWORD
    case.body = body


def _refresh(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.body = {"refresh_token": world.login(world.emails["login"])["refresh_token"]}


def _create_user(world: World, case: Any, draw: Draw, valid: bool) -> None:
    body = _body(case)
    body["email"] = f"{world.unique('user')}@example.com"
    if valid:
        body["password"] = PASSWORD
    case.body = body


def _user(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["user_id"] = draw(st.sampled_from(world.victims))
    if valid and case.operation.definition.raw["operationId"] == "change_user":
        body = _body(case)
        if not body or all(v is None for v in body.values()):
            case.body = {"is_active": draw(st.booleans())}


def _append(world: World, case: Any, draw: Draw, valid: bool) -> None:
    body = _body(case)
    _drop(body, "expected_version")
    if valid:
        body["aggregate_type"] = "fuzz"
        body["aggregate_id"] = world.unique("aggregate")
        body["event_type"] = "FuzzHappened"
        body["data"] = {"n": draw(st.integers(0, 9))}
        body["metadata"] = None
    case.body = body


def _aggregate(world: World, case: Any, draw: Draw, valid: bool) -> None:
    ids = world.completed_runs + world.schedules
    case.path_parameters["aggregate_id"] = draw(st.sampled_from(ids))
    if valid:
        _drop(case.query, "from_version")


def _stream(world: World, case: Any, draw: Draw, valid: bool) -> None:
    if case.query is not None and "aggregate_id" in case.query:
        case.query["aggregate_id"] = draw(st.sampled_from(world.completed_runs))


def _template(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["name"] = draw(st.sampled_from(["order_summary", "customer_support"]))
    if valid:
        _drop(case.query, "version")


def _trigger(world: World, case: Any, draw: Draw, valid: bool) -> None:
    body = _body(case)
    body["workflow_name"] = "order_summary"
    _drop(body, "version")
    if valid:
        body["data"] = ORDER
        _drop(body, "idempotency_key")
        _drop(case.headers, "Idempotency-Key")
        _drop(case.query, "wait")
        if draw(st.booleans()):
            case.query = {**(case.query or {}), "wait": draw(st.sampled_from(["0", "0.5", "1"]))}
    case.body = body


def _list_runs(world: World, case: Any, draw: Draw, valid: bool) -> None:
    if case.query is not None and "workflow_name" in case.query:
        case.query["workflow_name"] = "order_summary"
    if valid:
        _drop(case.query, "since", "until")  # generated independently: `since` may be later


def _run(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["workflow_id"] = draw(st.sampled_from(world.completed_runs))
    if valid:
        _drop(case.query, "after")


def _cancel(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["workflow_id"] = world.waiting_run()


def _retry(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["workflow_id"] = world.failed_run()


def _replay(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["workflow_id"] = draw(st.sampled_from(world.completed_runs))
    if valid:
        # order_summary's steps; overrides that fit it (its steps are transforms: no model).
        body: dict[str, Any] = {"from_step": draw(st.sampled_from(["totals", "summary"]))}
        overrides = draw(st.sampled_from([{}, {"input": ORDER}, {"version": 1}]))
        if overrides:
            body["overrides"] = overrides
        _drop(case.headers, "Idempotency-Key")
        case.body = body


def _decide(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["workflow_id"] = world.approval_run()
    if valid:
        body: dict[str, Any] = {"step": "review"}
        if draw(st.booleans()):
            body["comment"] = "fuzzed"
        if case.operation.definition.raw["operationId"] == "approve_step" and draw(st.booleans()):
            body["data"] = {"text": "edited"}
        case.body = body


def _list_approvals(world: World, case: Any, draw: Draw, valid: bool) -> None:
    if case.query is not None and "workflow_name" in case.query:
        case.query["workflow_name"] = "fuzz_approval"


def _usage(world: World, case: Any, draw: Draw, valid: bool) -> None:
    if valid:
        _drop(case.query, "from", "to")  # generated independently: often reversed or too far


def _new_schedule(world: World, case: Any, draw: Draw, valid: bool) -> None:
    body = _body(case)
    body["name"] = world.unique("schedule")
    body["workflow_name"] = "order_summary"
    # A real workflow and input, so the generated timing (cron or interval, time zone,
    # bounds) is what the server judges.
    body["data"] = ORDER
    _drop(body, "workflow_version")
    if valid:
        case.body = {
            "name": body["name"], "workflow_name": "order_summary", "data": ORDER,
            "paused": draw(st.booleans()),
            **draw(st.sampled_from([{"cron": "0 3 * * *"}, {"interval_seconds": 86400},
                                    {"cron": "30 8 * * 1-5", "timezone": "Europe/Paris"}])),
        }  # fmt: skip
        return
    case.body = body


def _schedule(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["schedule_id"] = draw(st.sampled_from(world.schedules))
    if isinstance(case.body, dict):
        _drop(case.body, "workflow_version")
        if "workflow_name" in case.body:
            case.body["workflow_name"] = "order_summary"
        if "data" in case.body:
            case.body["data"] = ORDER
    if valid and case.operation.definition.raw["operationId"] == "change_schedule":
        case.body = draw(st.sampled_from([
            {"paused": True}, {"name": world.unique("renamed")}, {"cron": "15 4 * * *"},
            {"interval_seconds": 43200, "paused": True}, {"data": ORDER, "priority": 5},
        ]))  # fmt: skip


def _delete_schedule(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["schedule_id"] = world.schedule()


def _register(world: World, case: Any, draw: Draw, valid: bool) -> None:
    body = _body(case)
    body["service_name"] = world.unique("service")
    if valid:
        body = {
            "service_name": body["service_name"], "service_url": "http://127.0.0.1:9/",
            "ttl_seconds": draw(st.sampled_from([60, 3600])),
            "tags": draw(st.lists(st.sampled_from(["a", "b", "mcp"]), max_size=3, unique=True)),
        }  # fmt: skip
    case.body = body


def _service(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["service_id"] = draw(st.sampled_from(world.services))


def _deregister(world: World, case: Any, draw: Draw, valid: bool) -> None:
    case.path_parameters["service_id"] = world.service()


ASSISTS: dict[str, Assist] = {
    "create_api_key": _api_key,
    "revoke_api_key": _revoke_key,
    "login": _login,
    "refresh": _refresh,
    "create_user": _create_user,
    "get_user": _user,
    "change_user": _user,
    "append_event": _append,
    "aggregate_events": _aggregate,
    "stream_events": _stream,
    "get_template": _template,
    "trigger": _trigger,
    "list_runs": _list_runs,
    "run_status": _run,
    "run_results": _run,
    "run_logs": _run,
    "cancel_run": _cancel,
    "retry_run": _retry,
    "replay_run": _replay,
    "approve_step": _decide,
    "reject_step": _decide,
    "list_approvals": _list_approvals,
    "tenant_usage": _usage,
    "run_usage": _run,
    "create_schedule": _new_schedule,
    "get_schedule": _schedule,
    "change_schedule": _schedule,
    "delete_schedule": _delete_schedule,
    "register_service": _register,
    "get_service": _service,
    "service_checks": _service,
    "heartbeat": _service,
    "deregister_service": _deregister,
}


def _assist(world: World, case: Any, draw: Draw, valid: bool) -> None:
    operation_id = case.operation.definition.raw["operationId"]
    if valid:
        # A generated cursor or resume point is almost never one the server issued.
        _drop(case.query, "cursor")
        _drop(case.headers, "Last-Event-ID")
    assist = ASSISTS.get(operation_id)
    if assist is not None:
        assist(world, case, draw, valid)


def _clean_up(world: World, operation_id: str, status: int, body: Any) -> None:
    """Keep what a case made from firing runs in the background for the rest of the run."""
    if status == 201 and operation_id == "create_schedule":
        world.call("DELETE", f"/api/v1/schedules/{body['id']}", expect=204)
    elif status == 200 and operation_id == "change_schedule":
        world.call("PATCH", f"/api/v1/schedules/{body['id']}", json={"paused": True}, expect=200)


# --- the test ----------------------------------------------------------------------------


def send(world: World, principal: Principal, operation_id: str, case: Any, negative: bool) -> int:
    """Send the case as the principal, check the answer against the document; its status."""
    # Logging out ends the session it is sent with: never the principal's own.
    credential = (
        world.session_of(principal)
        if operation_id == "logout"
        else world.credentials.get(principal.name, {})
    )
    # schemathesis fills the security schemes' headers with generated values, which would
    # take the place of the principal's credential.
    case.headers = {
        name: value for name, value in (case.headers or {}).items()
        if name.lower() not in CREDENTIAL_HEADERS
    }  # fmt: skip
    headers = {**case.headers, **credential}
    timeout = STREAM_SECONDS if operation_id in STREAMS else 30
    response = case.call(session=world.client, headers=headers, timeout=timeout)
    checks = [*CHECKS, negative_data_rejection] if negative else CHECKS
    case.validate_response(response, checks=checks, headers=headers)
    if operation_id in ("create_schedule", "change_schedule"):
        _clean_up(world, operation_id, response.status_code, response.json())
    return int(response.status_code)


def coverage(world: World, operation_id: str) -> None:
    """schemathesis's coverage cases (boundary values, each constraint broken in turn, missing
    and duplicated parameters, other methods), sent as the admin, who may do anything."""
    operation = world.schema.find_operation_by_id(operation_id)
    cases = world.schema.iter_coverage_cases(
        operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=GenerationConfig(),
    )
    failures: list[BaseException] = []
    for case in cases:
        negative = case.meta is not None and case.meta.generation.mode == GenerationMode.NEGATIVE
        try:
            send(world, PRINCIPALS[0], operation_id, case, negative=negative)
        except (AssertionError, BaseExceptionGroup) as failure:  # one or a group of checks
            failures.append(failure)
    if failures:
        raise BaseExceptionGroup(f"{len(failures)} coverage case(s) of {operation_id}", failures)


def fuzz(world: World, principal: Principal, operation_id: str, permission: Any) -> None:
    operation = world.schema.find_operation_by_id(operation_id)
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    outcomes: Counter[tuple[str, int]] = Counter()

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @hypothesis.seed(SEED)
    @hypothesis.given(data=st.data())
    def one_case(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        case = data.draw(negative if kind == "negative" else positive, label="case")
        if kind in ("ids", "valid"):
            _assist(world, case, data.draw, kind == "valid")
        status = send(world, principal, operation_id, case, negative=kind == "negative")
        outcomes[(kind, status)] += 1

    one_case()

    successes = sum(n for (kind, status), n in outcomes.items() if 200 <= status < 300)
    if not principal.may(permission):
        assert successes == 0, f"{principal.name} got a 2xx without {permission}: {outcomes}"
        return
    if operation_id == "logout" and principal.api_key:
        return  # an API key has no session to end: revoking it is DELETE /api-keys/{id}
    tried = sum(n for (kind, _), n in outcomes.items() if kind != "negative")
    share = sum(
        n for (kind, status), n in outcomes.items() if kind != "negative" and 200 <= status < 300
    ) / max(tried, 1)
    assert share >= MIN_SUCCESS_SHARE, (
        f"{operation_id} as {principal.name}: 2xx in {share:.0%} of {tried} cases, "
        f"at least {MIN_SUCCESS_SHARE:.0%} needed; (kind, status) counts: {dict(outcomes)}"
    )


@pytest.mark.timeout(120 + 3 * MAX_EXAMPLES)
@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
@pytest.mark.parametrize(("operation_id", "permission"), OPERATIONS, ids=[o for o, _ in OPERATIONS])
def test_operation_on_sqlite(
    sqlite_world: World, operation_id: str, permission: Permission | None, principal: Principal
) -> None:
    fuzz(sqlite_world, principal, operation_id, permission)


@pytest.mark.timeout(120 + 3 * MAX_EXAMPLES)
@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
@pytest.mark.parametrize(("operation_id", "permission"), OPERATIONS, ids=[o for o, _ in OPERATIONS])
def test_operation_on_postgresql(
    postgres_world: World, operation_id: str, permission: Permission | None, principal: Principal
) -> None:
    fuzz(postgres_world, principal, operation_id, permission)


@pytest.mark.parametrize(("operation_id", "permission"), OPERATIONS, ids=[o for o, _ in OPERATIONS])
def test_coverage_cases_on_sqlite(
    sqlite_world: World, operation_id: str, permission: Permission | None
) -> None:
    coverage(sqlite_world, operation_id)


@pytest.mark.parametrize(("operation_id", "permission"), OPERATIONS, ids=[o for o, _ in OPERATIONS])
def test_coverage_cases_on_postgresql(
    postgres_world: World, operation_id: str, permission: Permission | None
) -> None:
    coverage(postgres_world, operation_id)


# --- the fuzzer itself can fail ----------------------------------------------------------


def _altered(world: World, change: Callable[[dict[str, Any]], None]) -> World:
    """The world with a document changed so that the server no longer matches it."""
    document = copy.deepcopy(world.schema.raw_schema)
    change(document)
    schema = schemathesis.openapi.from_dict(document)
    schema.app = world.app
    return dataclasses.replace(world, schema=schema)


def test_an_answer_unlike_the_documented_body_fails(sqlite_world: World) -> None:
    def demand_a_field_never_sent(document: dict[str, Any]) -> None:
        caller = document["components"]["schemas"]["CallerView"]
        caller["required"] = [*caller.get("required", []), "never_sent"]

    world = _altered(sqlite_world, demand_a_field_never_sent)
    with pytest.raises(BaseExceptionGroup, match="Response violates schema"):
        fuzz(world, PRINCIPALS[0], "me", Permission.profile_read)


def test_an_undocumented_status_fails(sqlite_world: World) -> None:
    def forget_the_unknown_workflow(document: dict[str, Any]) -> None:
        del document["paths"]["/api/v1/workflows/trigger"]["post"]["responses"]["404"]

    world = _altered(sqlite_world, forget_the_unknown_workflow)
    with pytest.raises(BaseExceptionGroup, match="Undocumented status code"):
        fuzz(world, PRINCIPALS[1], "trigger", Permission.workflows_run)


def test_an_operation_that_never_succeeds_fails(sqlite_world: World) -> None:
    revoked = sqlite_world.login(sqlite_world.emails["operator"])["token"]
    headers = {"Authorization": f"Bearer {revoked}"}
    sqlite_world.call("POST", "/api/v1/auth/logout", headers=headers, expect=204)
    world = dataclasses.replace(
        sqlite_world, credentials={**sqlite_world.credentials, "operator": headers}
    )
    with pytest.raises(AssertionError, match=r"2xx in 0% of \d+ cases"):
        fuzz(world, PRINCIPALS[1], "list_runs", Permission.workflows_read)
