"""`workflow-engine worker`: a separate process runs the steps of runs an API server accepted."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Worker-Process-Test-42"}  # fmt: skip
EXAMPLE = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}


def _status(server: Server, token: str, run_id: str) -> str:
    response = httpx.get(
        f"{server.url}/api/v1/workflows/{run_id}/status",
        headers={"Authorization": f"Bearer {token}"}, timeout=5,
    )  # fmt: skip
    return str(response.json()["status"])


def test_a_standalone_worker_runs_what_the_api_accepted_and_stops_cleanly(
    server_factory: type[Server], fresh_postgres_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": fresh_postgres_url, **ADMIN}
    api = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
    login = httpx.post(
        f"{api.url}/api/v1/auth/login",
        timeout=10,
        json={
            "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
            "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
        },
    )
    token = login.json()["token"]  # fmt: skip
    triggered = httpx.post(
        f"{api.url}/api/v1/workflows/trigger", timeout=10,
        headers={"Authorization": f"Bearer {token}"},
        json={"workflow_name": "order_summary", "data": EXAMPLE},
    )  # fmt: skip
    run_id = triggered.json()["workflow_id"]
    time.sleep(1)
    assert _status(api, token, run_id) == "queued"  # no worker in the API process

    metrics_port = free_port()
    worker = server_factory(
        "worker", "--concurrency", "4", "--metrics-port", str(metrics_port),
        env={**env, "METRICS_TOKEN": "scrape-secret"},
    )  # fmt: skip
    worker.start(wait=False)
    deadline = time.monotonic() + 30
    while _status(api, token, run_id) != "completed":
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.1)

    # The worker's own counters, on its own port, behind the metrics token.
    scrape = f"http://127.0.0.1:{metrics_port}/metrics"
    refused = httpx.get(scrape, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401
    exposition = httpx.get(scrape, headers={"Authorization": "Bearer scrape-secret"}, timeout=5)
    assert exposition.status_code == 200
    assert 'workflow_step_attempts_total{node="transform",outcome="completed"}' in exposition.text
    assert worker.stop() == 0
    assert '"worker stopped"' in worker.output()
