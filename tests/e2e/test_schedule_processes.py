"""A schedule every second for 10 s, fired by two server processes on PostgreSQL, starts 10
runs — one per tick — as the event log shows."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Ticks-Once-Each-2026"}  # fmt: skip
FLOW = """
name: ping
steps:
  - {id: only, uses: transform, with: {at: "{{ input.at }}"}}
output: "{{ steps.only.output }}"
"""


def test_two_server_processes_start_each_tick_once(
    server_factory: type[Server], fresh_postgres_url: str, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "ping.yaml").write_text(FLOW)
    env = {"DATABASE_URL": fresh_postgres_url, "WORKFLOWS_DIR": str(flows),
           "JWT_SECRET": "schedules-e2e-secret-of-at-least-32-bytes", **ADMIN}  # fmt: skip
    first = server_factory(env={**env, "DATA_DIR": str(tmp_path / "a")}).start()
    second = server_factory(env={**env, "DATA_DIR": str(tmp_path / "b")}).start()
    credentials = {"email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
                   "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"]}  # fmt: skip
    token = httpx.post(f"{first.url}/api/v1/auth/login", json=credentials, timeout=10).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    start = datetime.now(UTC) + timedelta(seconds=2)
    body = {"name": "every-second", "workflow_name": "ping", "data": {"at": "tick"},
            "interval_seconds": 1, "start_at": start.isoformat(),
            "end_at": (start + timedelta(seconds=10)).isoformat()}  # fmt: skip
    with httpx.Client(base_url=second.url, headers=headers, timeout=30) as client:
        created = client.post("/api/v1/schedules", json=body)
        assert created.status_code == 201, created.text
        schedule = created.json()
        time.sleep(13.5)
        page = client.get("/api/v1/events", params={
            "event_type": "WorkflowTriggered", "actor": f"schedule:{schedule['id']}",
            "limit": 100,
        }).json()  # fmt: skip
    per_tick = Counter(event["metadata"]["scheduled_for"] for event in page["items"])
    assert sorted(datetime.fromisoformat(tick) for tick in per_tick) == [
        start + timedelta(seconds=k) for k in range(10)
    ]
    assert set(per_tick.values()) == {1}  # 10 runs, not 20
