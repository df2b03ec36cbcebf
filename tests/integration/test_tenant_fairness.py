"""Workers take turns between tenants: a tenant's backlog of 2,000 runs does not keep another
tenant's run waiting behind it (checked on the event log's order, not on timings)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Uuid, bindparam, text

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    run_events,
    running,
    trigger_run,
)
from tests.integration.held_steps import BLOCKER, JOB, holder
from workflow_engine.auth.permissions import Role

BACKLOG = 2000
WORKFLOWS = [BLOCKER, JOB]

STARTED_BEFORE = text(
    "SELECT count(*) FROM events WHERE event_type = 'StepStarted' AND position < :position"
    " AND tenant_id = (SELECT tenant_id FROM workflow_runs WHERE id = :run)"
).bindparams(bindparam("run", type_=Uuid()))
DROP_BACKLOG = text(
    "DELETE FROM tasks WHERE tenant_id = (SELECT tenant_id FROM workflow_runs WHERE id = :run)"
).bindparams(bindparam("run", type_=Uuid()))


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> Any:
    # One worker slot, held by a third tenant's run while the backlog builds up.
    return build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="1")


@pytest.fixture
async def tenants(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, str]]]]:
    async with running(app) as client:
        accounts = Accounts(app, client)
        headers = [{"Authorization": f"Bearer {await accounts.token(Role.operator)}"}
                   for _ in range(3)]  # fmt: skip
        yield client, headers


async def test_a_backlog_does_not_hold_up_another_tenant(
    app: Any, tenants: tuple[httpx.AsyncClient, list[dict[str, str]]]
) -> None:
    client, (busy, quiet, blocking) = tenants
    started, released = holder(str(id(app)))
    await trigger_run(client, blocking, "blocker", {"key": str(id(app))})
    async with asyncio.timeout(15):
        await started.wait()

    backlog = [(await trigger_run(client, busy, "job", {"n": n}))["workflow_id"]
               for n in range(BACKLOG)]  # fmt: skip
    other = await trigger_run(client, quiet, "job", {"n": -1})
    db = Accounts(app, client).db
    try:
        released.set()
        assert (await finished_run(client, quiet, other["workflow_id"]))["status"] == "completed"
        [position] = [e["position"] for e in await run_events(client, quiet, other["workflow_id"])
                      if e["event_type"] == "StepStarted"]  # fmt: skip
        async with db.read() as conn:
            found = {"position": position, "run": uuid.UUID(backlog[0])}
            ahead = (await conn.execute(STARTED_BEFORE, found)).scalar_one()
        # Taking turns, the other tenant's run is next after the backlog's first: far below
        # the 5 % (100 runs) the backlog could take first.
        assert ahead <= 2, ahead
    finally:
        async with db.transaction() as conn:  # other tests' workers share this database
            await conn.execute(DROP_BACKLOG, {"run": uuid.UUID(backlog[0])})
