"""`POST /api/v1/workflows/trigger?wait=` against the real server: a client that goes away stops
only the waiting, and a run finished by a standalone worker process wakes the waiting trigger."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("e2e.nap")
async def nap(ctx: NodeContext, *, seconds: float) -> dict:
    await asyncio.sleep(seconds)
    return {"slept": seconds}
"""
FLOW = """
name: nap
steps:
  - {id: nap, uses: e2e.nap, with: {seconds: "{{ input.seconds }}"}}
output: "{{ steps.nap.output }}"
"""
ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Wait-For-It-2026"}  # fmt: skip
EXAMPLE = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}


def _token(server: Server) -> str:
    login = httpx.post(f"{server.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    })  # fmt: skip
    assert login.status_code == 200, login.text
    return str(login.json()["token"])


def _in_flight(server: Server) -> float:
    """Requests the server is answering, this scrape included."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_in_flight":
                return float(sample.value)
    raise AssertionError("http_requests_in_flight is not in /metrics")


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_client_that_disconnects_while_waiting_leaves_the_run_running(
    server_factory: type[Server], tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "e2e_nodes.py").write_text(NODES)
    (flows / "nap.yaml").write_text(FLOW)
    env = {"PYTHONPATH": str(modules), "NODE_MODULES": "e2e_nodes", "WORKFLOWS_DIR": str(flows),
           **ADMIN}  # fmt: skip
    if database == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
    server = server_factory(env=env).start()
    headers = {"Authorization": f"Bearer {_token(server)}", "Idempotency-Key": "nap-1"}
    trigger = f"{server.url}/api/v1/workflows/trigger?wait=30"
    body = {"workflow_name": "nap", "data": {"seconds": 10}}
    gave_up: list[BaseException] = []

    def impatient_client() -> None:  # hangs up after two seconds of the thirty it asked for
        try:
            httpx.post(trigger, headers=headers, json=body, timeout=httpx.Timeout(10, read=2))
        except httpx.ReadTimeout as exc:
            gave_up.append(exc)

    client = threading.Thread(target=impatient_client)
    client.start()
    _until(lambda: _in_flight(server) == 2, 10, "the trigger never waited")
    client.join(15)
    assert gave_up, "the trigger answered before the client hung up"

    # The server stops waiting at once, while the run is still going (it naps ten seconds)...
    _until(lambda: _in_flight(server) == 1, 5, "the server still waits for a gone client")
    runs = httpx.get(f"{server.url}/api/v1/workflows", headers=headers, timeout=10).json()
    assert [run["status"] for run in runs["items"]] == ["running"]  # ...which goes on
    again = httpx.post(trigger, headers=headers, json=body, timeout=40)
    assert again.status_code == 200, again.text
    assert again.json()["workflow_id"] == runs["items"][0]["workflow_id"]
    assert again.json()["output"] == {"slept": 10}
    assert server.stop() == 0


def test_a_run_finished_by_a_standalone_worker_wakes_the_waiting_trigger(
    server_factory: type[Server], fresh_postgres_url: str
) -> None:
    env = {"DATABASE_URL": fresh_postgres_url, **ADMIN}
    api = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
    headers = {"Authorization": f"Bearer {_token(api)}"}
    answers: list[tuple[httpx.Response, float]] = []

    def waiting_client() -> None:
        started = time.monotonic()
        response = httpx.post(
            f"{api.url}/api/v1/workflows/trigger?wait=60", headers=headers, timeout=90,
            json={"workflow_name": "order_summary", "data": EXAMPLE},
        )  # fmt: skip
        answers.append((response, time.monotonic() - started))

    client = threading.Thread(target=waiting_client)
    client.start()
    _until(lambda: _in_flight(api) == 2, 10, "the trigger never waited")
    time.sleep(1)
    assert not answers  # no worker in the API process: the run waits in the queue

    worker = server_factory("worker", "--concurrency", "2", env=env)
    worker.start(wait=False)
    client.join(75)
    [(response, took)] = answers
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert response.json()["output"]["summary"] == "Ada: 1 item(s), total 12.50"
    assert took < 50  # woken when the worker's process ended the run, not by the 60 s
    assert worker.stop() == 0
    assert api.stop() == 0
