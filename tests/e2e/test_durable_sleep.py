"""A `sleep` outlives its server: a run sleeping 2 s when its server is SIGKILLed completes
after a new server starts on the same database, and so does a run waiting for an event that
comes after the restart; and a thousand sleeping runs hold none of the worker's slots, so
other runs go on."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import Server
from workflow_engine.config.database_url import to_async_url
from workflow_engine.db import Database

pytestmark = pytest.mark.e2e

FLOWS = {
    "nap.yaml": """
name: nap
steps:
  - {id: nap, uses: sleep, with: {seconds: "{{ input.seconds }}"}}
  - {id: after, uses: transform, needs: [nap], with: {woke: "{{ steps.nap.output.until }}"}}
output: "{{ steps.after.output.woke }}"
""",
    "reply.yaml": """
name: reply
steps:
  - {id: reply, uses: wait.event, with: {event: Replied, aggregate: "{{ input.ticket }}"}}
output: "{{ steps.reply.output.text }}"
""",
    "quick.yaml": """
name: quick
steps:
  - {id: only, uses: transform, with: {ok: true}}
output: "{{ steps.only.output.ok }}"
""",
}
ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Sleeps-Through-Restarts-2026"}  # fmt: skip
SLEEPERS = 1000


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_sleep_survives_a_killed_server_and_sleepers_hold_no_worker(
    server_factory: type[Server], database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'sleep.db'}"
        if database == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    flows = tmp_path / "flows"
    flows.mkdir()
    for name, body in FLOWS.items():
        (flows / name).write_text(body)
    env = {
        "DATABASE_URL": url, "WORKFLOWS_DIR": str(flows), "WORKER_CONCURRENCY": "4",
        "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
        "RATE_LIMIT_TENANT_PER_MINUTE": "1000000", "RATE_LIMIT_TENANT_BURST": "100000", **ADMIN,
    }  # fmt: skip
    first = server_factory(env=env).start()
    headers = _login(first)

    with httpx.Client(base_url=first.url, headers=headers, timeout=30) as client:
        run = client.post("/api/v1/workflows/trigger",
                          json={"workflow_name": "nap", "data": {"seconds": 2}}).json()  # fmt: skip
        waiting = _until_status(client, run["workflow_id"], "waiting")
        body = {"workflow_name": "reply", "data": {"ticket": "t-9"}}
        reply = client.post("/api/v1/workflows/trigger", json=body).json()
        _until_status(client, reply["workflow_id"], "waiting")
    wakes = datetime.fromisoformat(waiting["steps"][0]["next_attempt_at"])
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)  # mid-sleep, nothing shut down cleanly
    first.process.wait(10)

    second = server_factory(env=env).start()
    with httpx.Client(base_url=second.url, headers=headers, timeout=30) as client:
        done = _until_status(client, run["workflow_id"], "completed")
        assert datetime.fromisoformat(done["steps"][0]["finished_at"]) >= wakes
        output = client.get(run["links"]["results"]).json()["output"]
        assert datetime.fromisoformat(output) == wakes
        events = client.get(f"/api/v1/events/{run['workflow_id']}", params={"limit": 100}).json()
        nap = [e["event_type"] for e in events["items"] if e["data"].get("step_id") == "nap"]
        assert nap == ["StepStarted", "StepWaiting", "StepCompleted"]

        event = {"aggregate_type": "ticket", "aggregate_id": "t-9", "event_type": "Replied",
                 "data": {"text": "hi"}}  # fmt: skip
        replied = client.post("/events", json=event)
        assert replied.status_code == 201, replied.text
        _until_status(client, reply["workflow_id"], "completed")
        assert client.get(reply["links"]["results"]).json()["output"] == "hi"

        sleepers = [
            client.post("/api/v1/workflows/trigger",
                        json={"workflow_name": "nap", "data": {"seconds": 3600}}).status_code
            for _ in range(SLEEPERS)
        ]  # fmt: skip
        assert sleepers == [202] * SLEEPERS
        asyncio.run(_until_all_waiting(url, SLEEPERS))
        quick = client.post("/api/v1/workflows/trigger?wait=30",
                            json={"workflow_name": "quick"})  # fmt: skip
        assert (quick.status_code, quick.json()["status"]) == (200, "completed")
    assert asyncio.run(_leased_tasks(url)) == 0


def _login(server: Server) -> dict[str, str]:
    credentials = {"email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
                   "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"]}  # fmt: skip
    token = httpx.post(f"{server.url}/api/v1/auth/login", json=credentials, timeout=10)
    return {"Authorization": f"Bearer {token.json()['token']}"}


def _until_status(client: httpx.Client, run_id: str, wanted: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/workflows/{run_id}/status").json()
        if status["status"] == wanted:
            return dict(status)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not {wanted} within 30 s: {status}")


async def _until_all_waiting(url: str, count: int) -> None:
    db = Database(to_async_url(url))
    try:
        async with asyncio.timeout(120):
            while True:
                async with db.read() as conn:
                    waiting = (await conn.execute(text(
                        "SELECT count(*) FROM workflow_runs WHERE status = 'waiting'"
                    ))).scalar_one()  # fmt: skip
                if waiting == count:
                    return
                await asyncio.sleep(0.2)
    finally:
        await db.dispose()


async def _leased_tasks(url: str) -> int:
    db = Database(to_async_url(url))
    try:
        async with db.read() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM tasks WHERE lease_owner IS NOT NULL")
            )
            return int(found.scalar_one())
    finally:
        await db.dispose()
