"""Limits on runs under way: `MAX_RUNNING_PER_TENANT`, a workflow's keyed `concurrency`, and
`TENANT_WEIGHTS` in the turns claims take — on SQLite and PostgreSQL, checked on the event log
(positions), never on timings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

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

NAP = {"name": "nap", "steps": [{"id": "nap", "uses": "sleep", "with": {"seconds": 0.2}}]}
PER_TICKET = {
    "name": "per_ticket", "concurrency": {"limit": 1, "key": "{{ input.ticket }}"},
    "steps": [{"id": "nap", "uses": "sleep", "with": {"seconds": 0.3}}],
}  # fmt: skip
WORKFLOWS = [NAP, PER_TICKET, BLOCKER, JOB]


async def _span(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> tuple[int, int]:
    """Where the run began and ended in the log: its first step's start, its end."""
    events = await run_events(client, headers, run_id)
    start = min(e["position"] for e in events if e["event_type"] == "StepStarted")
    [end] = [e["position"] for e in events if e["event_type"] == "WorkflowCompleted"]
    return start, end


async def _started(client: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> int:
    await finished_run(client, headers, run_id, timeout=30)
    return (await _span(client, headers, run_id))[0]


def _most_at_once(spans: list[tuple[int, int]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


async def test_a_tenant_cap_is_never_exceeded_and_nothing_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, MAX_RUNNING_PER_TENANT="2",
                    WORKER_CONCURRENCY="8")  # fmt: skip
    async with running(app) as client:
        headers = {"Authorization": f"Bearer {await Accounts(app, client).token(Role.operator)}"}
        runs = await asyncio.gather(*[trigger_run(client, headers, "nap") for _ in range(50)])
        ids = [run["workflow_id"] for run in runs]
        for run_id in ids:
            done = await finished_run(client, headers, run_id, timeout=60)
            assert done["status"] == "completed"
        spans = [await _span(client, headers, run_id) for run_id in ids]
    assert _most_at_once(spans) == 2


async def test_a_keyed_concurrency_of_one_serialises_runs_of_a_key_only(
    database_url: str, tmp_path: Path
) -> None:
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="8")
    async with running(app) as client:
        headers = {"Authorization": f"Bearer {await Accounts(app, client).token(Role.operator)}"}
        tickets = ["a", "a", "a", "b", "b"]
        runs = await asyncio.gather(*[
            trigger_run(client, headers, "per_ticket", {"ticket": t}) for t in tickets
        ])  # fmt: skip
        spans = []
        for run in runs:
            done = await finished_run(client, headers, run["workflow_id"], timeout=30)
            assert done["status"] == "completed"
            spans.append(await _span(client, headers, run["workflow_id"]))
    assert _most_at_once(spans[:3]) == 1  # ticket a: one at a time
    assert _most_at_once(spans[3:]) == 1  # ticket b: one at a time
    assert _most_at_once(spans) == 2  # but a and b side by side


async def test_tenant_weights_share_the_claims(database_url: str, tmp_path: Path) -> None:
    first = build_app(database_url, tmp_path, workflows=WORKFLOWS)
    async with running(first) as client:
        accounts = Accounts(first, client)
        heavy, light = await accounts.tenant(), await accounts.tenant()
        emails = [await accounts.user(Role.operator, t) for t in (heavy, light)]
        blocking = await accounts.user(Role.operator)
    # A restart with the weights: each worker applies them at start.
    app = build_app(database_url, tmp_path, workflows=WORKFLOWS, WORKER_CONCURRENCY="1",
                    TENANT_WEIGHTS=f'{{"{heavy}": 3}}')  # fmt: skip
    async with running(app) as client:
        accounts = Accounts(app, client)
        heads = [{"Authorization": f"Bearer {(await accounts.login(e))['token']}"}
                 for e in (*emails, blocking)]  # fmt: skip
        started, released = holder(f"weights-{id(app)}")
        await trigger_run(client, heads[2], "blocker", {"key": f"weights-{id(app)}"})
        async with asyncio.timeout(15):
            await started.wait()
        backlog: dict[str, list[str]] = {"heavy": [], "light": []}
        for n in range(20):
            for name, head in (("heavy", heads[0]), ("light", heads[1])):
                run = await trigger_run(client, head, "job", {"n": n})
                backlog[name].append(run["workflow_id"])
        released.set()
        starts = [(await _started(client, head, run_id), name)
                  for name, head in (("heavy", heads[0]), ("light", heads[1]))
                  for run_id in backlog[name]]  # fmt: skip
    first_sixteen = [name for _, name in sorted(starts)[:16]]
    assert first_sixteen.count("heavy") == 12, first_sixteen  # three of every four
