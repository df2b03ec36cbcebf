"""A PostgreSQL that the test owns goes away and comes back; our server follows without a restart.

The cluster is made with `initdb` in a temporary directory as the `postgres` user (initdb
refuses root), on its own port, so the machine's own server is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Outages-Are-Not-Bugs-2026"}  # fmt: skip


@dataclass
class Cluster:
    data: Path
    port: int
    bindir: Path

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l",
                  str(self.data / "log.txt"), "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        if IN_CI:
            pytest.fail("initdb is not installed: the database outage test must run in CI")
        pytest.skip("initdb is not installed")
    # Not under pytest's temporary directory: that one is private to root.
    data = Path(tempfile.mkdtemp(prefix="we-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    cluster = Cluster(data, free_port(), bindir)
    cluster._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    cluster.start()
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        cluster.stop()
    shutil.rmtree(data, ignore_errors=True)


def _detailed(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/health/detailed", timeout=10)


def _wait_for(predicate, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_health_follows_a_postgresql_outage_and_recovery(
    cluster: Cluster, server_factory: type[Server]
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    server = server_factory(env={"DATABASE_URL": url, **ADMIN}).start()
    assert _detailed(server).status_code == 200
    credentials = {"email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
                   "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"]}  # fmt: skip
    token = httpx.post(f"{server.url}/api/v1/auth/login", json=credentials, timeout=10).json()
    api = httpx.Client(base_url=server.url, timeout=30,
                       headers={"Authorization": f"Bearer {token['token']}"})  # fmt: skip
    order = {"customer": "Ada", "items": [{"name": "Manual", "amount": 12.5}]}
    trigger = {"workflow_name": "order_summary", "data": order}
    before = api.post("/api/v1/workflows/trigger?wait=10", json=trigger).json()

    cluster.stop()
    # Every request that needs the database: a 503 problem saying nothing was done, never a
    # 500 or a hang; the outage logged once, not a traceback per request.
    for _ in range(3):
        for answer in (api.post("/api/v1/workflows/trigger", json=trigger),
                       api.get(f"/api/v1/workflows/{before['workflow_id']}/status")):  # fmt: skip
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert int(answer.headers["retry-after"]) > 0
            assert "no run was started" in answer.json()["detail"]
    down = _wait_for(lambda: (r := _detailed(server)).status_code == 503 and r)
    assert down, "health did not turn 503"
    body = down.json()
    assert body["status"] == "down"
    assert "database" in body["failing"]
    database = {s["name"]: s for s in body["services"]}["database"]
    assert database["status"] == "down"
    assert httpx.get(f"{server.url}/health").status_code == 200  # liveness is unaffected

    cluster.start()
    # 200 comes first while a service that failed during the outage (the schedule ticker)
    # still says `degraded`; recovered means `ok` once each has run again.
    up = _wait_for(
        lambda: (r := _detailed(server)).status_code == 200 and r.json()["status"] == "ok" and r
    )
    assert up, f"health did not recover: {_detailed(server).json()}"
    after = _wait_for(lambda: (r := api.post("/api/v1/workflows/trigger", json=trigger))
                      .status_code == 202 and r)  # fmt: skip
    assert after, "triggers did not recover"
    api.close()
    assert server.stop() == 0
    log = server.log_file.read_text()
    assert "unhandled error" not in log
    assert log.count("the database is unavailable") == 1
    assert "the database is available again" in log


SLOW_NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("outage.slow")
async def slow(ctx: NodeContext, *, seconds: float) -> dict:
    await asyncio.sleep(seconds)
    return {"slept": seconds}
"""
SLOW_FLOW = """
name: slow_step
steps:
  - {id: nap, uses: outage.slow, with: {seconds: 3}}
output: "{{ steps.nap.output.slept }}"
"""


def test_a_step_ending_during_an_outage_is_the_outage_not_a_traceback(
    cluster: Cluster, server_factory: type[Server], tmp_path: Path
) -> None:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "outage_nodes.py").write_text(SLOW_NODES)
    (flows / "slow_step.yaml").write_text(SLOW_FLOW)
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
        "PYTHONPATH": str(modules), "NODE_MODULES": "outage_nodes", "WORKFLOWS_DIR": str(flows),
        "WORKER_LEASE_SECONDS": "2", **ADMIN,
    }  # fmt: skip
    server = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
    worker = server_factory("worker", env=env).start(wait=False)
    credentials = {"email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
                   "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"]}  # fmt: skip
    token = httpx.post(f"{server.url}/api/v1/auth/login", json=credentials, timeout=10).json()
    api = httpx.Client(base_url=server.url, timeout=30,
                       headers={"Authorization": f"Bearer {token['token']}"})  # fmt: skip
    run = api.post("/api/v1/workflows/trigger", json={"workflow_name": "slow_step"}).json()
    status = f"/api/v1/workflows/{run['workflow_id']}/status"
    running = _wait_for(lambda: api.get(status).json()["status"] == "running", timeout=60)
    assert running, "the step did not start"

    cluster.stop()
    time.sleep(5)  # the step ends, and its worker cannot record it
    cluster.start()
    results = f"/api/v1/workflows/{run['workflow_id']}/results"
    done = _wait_for(lambda: (r := api.get(results)).status_code == 200 and r, timeout=60)
    assert done, "the run did not complete after the database came back"
    assert done.json()["output"] == 3
    api.close()
    assert worker.stop() == 0
    log = worker.output()
    # The worker reports the outage once, as the server does, not a traceback per step.
    assert "task failed unexpectedly" not in log
    assert log.count("the database is unavailable") == 1
    assert "the database is available again" in log
