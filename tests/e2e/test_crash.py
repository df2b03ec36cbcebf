"""Crash test: workers SIGKILLed at random moments lose no run and record no step twice.

An API server (no worker of its own) and two `workflow-engine worker` processes on one
PostgreSQL database run 100 five-step runs; five times, one worker is killed with SIGKILL at a
random moment and started again. Steps are at-least-once (a killed worker's steps run again
once its lease expires); what the test asserts is the log: every run completes, each step of
each run has exactly one recorded completion, and no task is left leased.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import Server
from workflow_engine.config.database_url import to_async_url
from workflow_engine.db import Database

pytestmark = pytest.mark.e2e

SEED = 20261126
RUNS = 100
KILLS = 5
# Each step takes about a second, so that work is still leased when the fifth kill comes
# (with shorter steps two workers could finish all runs first, leaving nothing to kill).
NODES = """
import asyncio
import random

from workflow_engine.nodes import NodeContext, node


@node("crash.work")
async def work(ctx: NodeContext, *, n: int) -> dict:
    await asyncio.sleep(random.uniform(0.5, 1.5))
    return {"n": n + 1}
"""
FLOW = """
name: five_steps
steps:
  - {id: a, uses: crash.work, with: {n: 0}, retry: {max_attempts: 3, initial_delay: 0.1}}
  - {id: b, uses: crash.work, needs: [a], with: {n: "{{ steps.a.output.n }}"}}
  - {id: c, uses: crash.work, needs: [a], with: {n: "{{ steps.a.output.n }}"}}
  - {id: d, uses: crash.work, needs: [b, c], with: {n: "{{ steps.b.output.n }}"}}
  - {id: e, uses: crash.work, needs: [d], with: {n: "{{ steps.d.output.n }}"}}
output: "{{ steps.e.output.n }}"
"""
ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Crash-Test-Dummy-2026"}  # fmt: skip


def test_killed_workers_lose_no_run_and_record_no_step_twice(
    server_factory: type[Server], fresh_postgres_url: str, tmp_path: Path
) -> None:
    chance = random.Random(SEED)
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "crash_nodes.py").write_text(NODES)
    (flows / "five_steps.yaml").write_text(FLOW)
    env = {
        "DATABASE_URL": fresh_postgres_url, "PYTHONPATH": str(modules),
        "NODE_MODULES": "crash_nodes", "WORKFLOWS_DIR": str(flows), "WORKER_LEASE_SECONDS": "2",
        "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
        "RATE_LIMIT_TENANT_PER_MINUTE": "1000000", "RATE_LIMIT_TENANT_BURST": "100000", **ADMIN,
    }  # fmt: skip
    api = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
    workers = [server_factory("worker", env=env) for _ in range(2)]
    for worker in workers:
        worker.start(wait=False)

    token = httpx.post(f"{api.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
        run_ids = [
            client.post("/api/v1/workflows/trigger", json={"workflow_name": "five_steps"}).json()[
                "workflow_id"
            ]
            for _ in range(RUNS)
        ]
        for kill in range(KILLS):
            time.sleep(chance.uniform(0.3, 1.5))
            victim = workers[chance.randrange(len(workers))]
            assert victim.process is not None
            # Kill it while it holds steps: that is the case the test is about.
            asyncio.run(_until_holding(fresh_postgres_url, victim.process.pid))
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(10)
            replacement = server_factory("worker", env=env)
            replacement.start(wait=False)
            workers[workers.index(victim)] = replacement
            print(f"kill {kill + 1}: restarted a worker")

        deadline = time.monotonic() + 120
        pending = set(run_ids)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs unfinished"
            listed = client.get("/api/v1/workflows", params={"status": "completed", "limit": 200})
            pending -= {run["workflow_id"] for run in listed.json()["items"]}
            time.sleep(0.5)
        for run_id in run_ids[:5]:
            assert client.get(f"/api/v1/workflows/{run_id}/results").json()["output"] == 4

    completions, leased, started = asyncio.run(_log_facts(fresh_postgres_url))
    assert completions == {(run_id, step): 1 for run_id in run_ids for step in "abcde"}
    assert leased == 0
    assert started > RUNS * 5  # killed workers' steps really ran again elsewhere


async def _until_holding(url: str, pid: int) -> None:
    db = Database(to_async_url(url))
    try:
        async with asyncio.timeout(30):
            while True:
                async with db.read() as conn:
                    held = (await conn.execute(
                        text("SELECT count(*) FROM tasks WHERE lease_owner LIKE :owner"),
                        {"owner": f"%:{pid}:%"},
                    )).scalar_one()  # fmt: skip
                if held:
                    return
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()


async def _log_facts(url: str) -> tuple[dict[tuple[str, str], int], int, int]:
    db = Database(to_async_url(url))
    try:
        async with db.read() as conn:
            rows = await conn.execute(text(
                "SELECT aggregate_id, data->>'step_id' AS step, count(*) FROM events "
                "WHERE aggregate_type = 'runs' AND event_type = 'StepCompleted' "
                "GROUP BY aggregate_id, data->>'step_id'"
            ))  # fmt: skip
            completions = {(row.aggregate_id, row.step): row.count for row in rows}
            leased = (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one()
            starts = text("SELECT count(*) FROM events WHERE event_type = 'StepStarted'")
            started = (await conn.execute(starts)).scalar_one()
        return completions, int(leased), int(started)
    finally:
        await db.dispose()
