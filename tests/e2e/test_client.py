"""`workflow_engine.client` against a real server process (the installed wheel): trigger and
wait, typed errors, approvals and the registry, a login renewed after logout, API keys, and a
followed log that survives a logout and a server restart without losing or repeating entries.

Followed logs are streams, which only a real server shows (pitfall 13 in
docs/architecture.md)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.e2e.conftest import Server
from workflow_engine.client import (
    AsyncClient,
    Client,
    Conflict,
    FinishedRun,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    TriggeredRun,
    Unauthorized,
    Unreachable,
    WorkflowEngineError,
)

pytestmark = pytest.mark.e2e
T = TypeVar("T")

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Typed-Client-2026"}  # fmt: skip
LOGIN = {"email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"]}
# Out of reach, except reading one registered service: once a minute (the 429 below).
LIMITS = {
    "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "1000000", "RATE_LIMIT_TENANT_BURST": "100000",
    "RATE_LIMIT_ENDPOINTS": json.dumps(
        {"GET /api/v1/registry/services/{id}": {"requests_per_minute": 1, "burst_size": 1}}
    ),
}  # fmt: skip
ORDER = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}
TICKET = {"ticket_id": "12345", "customer_message": "I need help with my order"}

NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("e2e.drip")
async def drip(ctx: NodeContext, *, lines: int) -> dict:
    for n in range(lines):
        ctx.log.info(f"drop {n}")
        await asyncio.sleep(0.2)
    return {"drops": lines}
"""
# Three steps in a row, so that a restart falls between or inside them: either way each
# entry of the log is written once and must be received once.
DRIP = """name: drip
steps:
  - {id: first, uses: e2e.drip, with: {lines: 5}}
  - {id: second, uses: e2e.drip, with: {lines: 5}, needs: [first]}
  - {id: third, uses: e2e.drip, with: {lines: 5}, needs: [second]}
"""


def _api_key(url: str, role: str) -> str:
    token = httpx.post(f"{url}/api/v1/auth/login", json=LOGIN, timeout=10).json()["token"]
    created = httpx.post(f"{url}/api/v1/auth/api-keys", timeout=10,
                         headers={"Authorization": f"Bearer {token}"},
                         json={"name": f"client-{role}", "role": role})  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def test_the_client_drives_a_real_server(server_factory: type[Server]) -> None:
    server = server_factory(env={**ADMIN, **LIMITS}).start()

    with Client(server.url, **LOGIN) as client:
        assert client.me().email == LOGIN["email"]  # logged in on first use
        assert "customer_support" in {t.name for t in client.templates()}
        assert client.template("order_summary").example_input is not None

        # Trigger and wait: the finished run, typed, with its output.
        run = client.trigger("order_summary", ORDER, wait=30)
        assert isinstance(run, FinishedRun)
        assert (run.status, run.output["total"]) == ("completed", 12.5)
        assert client.status(run.workflow_id).progress.completed == 2
        assert client.results(run.workflow_id).output == run.output
        logged = [entry.message for entry in client.logs(run.workflow_id)]
        assert logged[0] == "run of order_summary version 1 queued"
        assert logged[-1] == "run completed"
        assert [e.id for e in client.logs(run.workflow_id, follow=True)] == [
            e.id for e in client.logs(run.workflow_id)
        ]  # a finished run's stream: its whole log, then the end
        assert run.workflow_id in {r.workflow_id for r in client.runs(limit=10).items}
        # The run's events, from the start of the log, live (the stream itself never ends).
        seen = []
        for event in client.events(aggregate_id=str(run.workflow_id), after=0):
            seen.append(event.event_type)
            if event.event_type == "WorkflowCompleted":
                break
        assert seen[0] == "WorkflowTriggered"

        # Typed errors carry the problem document's fields.
        with pytest.raises(NotFound) as missing:
            client.status(uuid.uuid4())
        assert (missing.value.status, missing.value.type) == (
            404, "urn:workflow-engine:problem:not-found",
        )  # fmt: skip
        with pytest.raises(InvalidRequest) as invalid:
            client.trigger("order_summary", {"customer": "Ada"})
        assert invalid.value.status == 422
        assert invalid.value.errors
        assert invalid.value.errors[0]["loc"] == ["body", "data"]
        with pytest.raises(NotFound):
            client.trigger("no_such_workflow")
        with pytest.raises(InvalidRequest):
            client.trigger("order_summary", ORDER, wait=-1)

        # An approval: the run waits, is listed, is approved, and completes.
        waiting = client.trigger("customer_support", {**TICKET, "require_approval": True})
        approval = _until(lambda: next(
            (a for a in client.approvals().items if a.workflow_id == waiting.workflow_id), None
        ))  # fmt: skip
        decision = client.approve(waiting.workflow_id, approval.step, comment="fine", data="Hi!")
        assert (decision.decision, decision.data) == ("approved", "Hi!")
        with pytest.raises(Conflict):
            client.reject(waiting.workflow_id, approval.step)
        assert _until(lambda: client.results(waiting.workflow_id)).status == "completed"

        # Cancel: a run stopped before it ends.
        slow = client.trigger("customer_support", {**TICKET, "require_approval": True})
        assert client.cancel(slow.workflow_id).status in ("cancelling", "cancelled")
        assert _until(lambda: client.results(slow.workflow_id)).status == "cancelled"

        # The registry, and a 429 with its retry_after.
        service = client.register_service("billing", "http://127.0.0.1:9", ttl_seconds=60,
                                          metadata={"version": "1"}, tags=["eu"])  # fmt: skip
        assert client.heartbeat(service.id).last_heartbeat_at is not None
        assert [s.id for s in client.services(name="billing").items] == [service.id]
        assert client.service(service.id).service_name == "billing"
        with pytest.raises(RateLimited) as limited:
            client.service(service.id)
        assert limited.value.status == 429
        assert limited.value.retry_after is not None
        assert limited.value.retry_after > 0
        client.deregister_service(service.id)
        assert client.services(name="billing").items == []

        # A revoked session is renewed with the password, transparently.
        client.logout()
        assert client.me().email == LOGIN["email"]

    with pytest.raises(Unauthorized) as refused:
        Client(server.url, email=LOGIN["email"], password="not-the-password").me()
    assert refused.value.title == "Unauthorized"
    assert refused.value.status == 401
    with pytest.raises(Unauthorized):
        Client(server.url, api_key="wek_nothing_here").me()
    with pytest.raises(Unreachable):
        Client("http://127.0.0.1:1").me()

    # API keys: a viewer reads but may not trigger.
    with Client(server.url, api_key=_api_key(server.url, "viewer")) as viewer:
        assert viewer.me().kind == "api_key"
        assert viewer.status(run.workflow_id).status == "completed"
        with pytest.raises(Forbidden) as forbidden:
            viewer.trigger("order_summary", ORDER)
        assert isinstance(forbidden.value, WorkflowEngineError)

    async def use_the_async_client() -> None:
        async with AsyncClient(server.url, api_key=_api_key(server.url, "operator")) as client:
            finished = await client.trigger("order_summary", ORDER, wait=30)
            assert isinstance(finished, FinishedRun)
            assert finished.status == "completed"
            followed = [e.message async for e in client.logs(finished.workflow_id, follow=True)]
            assert followed[-1] == "run completed"
            queued = await client.trigger("order_summary", ORDER)
            assert isinstance(queued, TriggeredRun)
            with pytest.raises(NotFound):
                await client.results(uuid.uuid4())

    asyncio.run(use_the_async_client())


def test_a_followed_log_survives_a_logout_and_a_server_restart(
    server_factory: type[Server], tmp_path: Path
) -> None:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "e2e_nodes.py").write_text(NODES)
    (flows / "drip.yaml").write_text(DRIP)
    server = server_factory(env={
        **ADMIN, **LIMITS, "PYTHONPATH": str(modules), "NODE_MODULES": "e2e_nodes",
        "WORKFLOWS_DIR": str(flows),
    }).start()  # fmt: skip

    with Client(server.url, **LOGIN) as client:
        run = client.trigger("drip")
        received = []
        for entry in client.logs(run.workflow_id, follow=True):
            received.append(entry)
            if entry.message == "drop 1" and entry.step == "first":
                # The server ends the stream of a revoked session (`event: closed`): the client
                # logs in again and resumes after the last entry it received.
                client.logout()
            if entry.message == "drop 1" and entry.step == "second":
                # The connection is cut: the client reconnects once the server is back.
                server.stop()
                server.start()
        assert client.status(run.workflow_id).status == "completed"
        whole = list(client.logs(run.workflow_id))

    ids = [entry.id for entry in received]
    assert len(ids) == len(set(ids))  # nothing twice
    assert ids == [entry.id for entry in whole]  # nothing lost, in order
    messages = [entry.message for entry in received]
    for step in ("first", "second", "third"):
        assert f"step {step} completed" in messages
    assert messages[-1] == "run completed"


def _until(read: Callable[[], T | None]) -> T:
    """What `read` returns once it is neither None nor a 409, polling for up to 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            found = read()
        except Conflict:
            found = None
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError("not within 60 s")
