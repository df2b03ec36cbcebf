"""Two server processes on one PostgreSQL database: exactly one probes the registered
services; kill it and the other takes over."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from workflow_engine.registry.probe import checker_id

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Registry-Leader-Test-42"}  # fmt: skip
CHECKER = re.compile(r"^workflow-engine-registry/\S+ \((?P<who>[^)]+)\)$")


class Probed:
    """Who probed the fake service, in order."""

    def __init__(self) -> None:
        self.by: list[str] = []
        self.lock = threading.Lock()

    def since(self, start: int) -> set[str]:
        with self.lock:
            return set(self.by[start:])

    def __len__(self) -> int:
        with self.lock:
            return len(self.by)


@pytest.fixture
def health_endpoint() -> Iterator[tuple[str, Probed]]:
    probed = Probed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = CHECKER.match(self.headers.get("User-Agent", ""))
            if match:
                with probed.lock:
                    probed.by.append(match["who"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", probed
    server.shutdown()


def _leader(server: Server) -> bool | None:
    try:
        body = httpx.get(f"{server.url}/health/detailed", timeout=5).json()
    except httpx.TransportError:
        return None
    entry = {s["name"]: s for s in body["services"]}["registry"]
    return bool(entry["data"]["leader"])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_exactly_one_process_probes_and_another_takes_over_when_it_dies(
    server_factory: type[Server], fresh_postgres_url: str, tmp_path: Path,
    health_endpoint: tuple[str, Probed],
) -> None:  # fmt: skip
    url, probed = health_endpoint
    env = {"DATABASE_URL": fresh_postgres_url, "REGISTRY_CHECK_INTERVAL_SECONDS": "0.2",
           "DEMO_SERVICES": "false", **ADMIN}  # fmt: skip
    first = server_factory(env=env).start()
    second = server_factory(env=env).start()
    token = httpx.post(f"{first.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    registered = httpx.post(
        f"{second.url}/api/v1/registry/register", timeout=10,
        headers={"Authorization": f"Bearer {token}"},
        json={"service_name": "probed", "service_url": url, "health_check_url": f"{url}/health"},
    )  # fmt: skip
    assert registered.status_code == 201, registered.text

    _wait(lambda: {_leader(first), _leader(second)} == {True, False}, 15, "no single leader")
    leader, follower = (first, second) if _leader(first) else (second, first)
    start = len(probed)
    _wait(lambda: len(probed) >= start + 10, 15, "the checker does not probe")
    assert len(probed.since(start)) == 1  # ten probes, all from one process

    assert leader.process is not None
    leader.process.send_signal(signal.SIGKILL)  # no goodbye: its connection just drops
    leader.process.wait(10)
    _wait(lambda: _leader(follower) is True, 15, "the follower did not take over")
    start = len(probed)
    _wait(lambda: len(probed) >= start + 5, 15, "the new leader does not probe")
    [new_prober] = probed.since(start)
    assert follower.process is not None
    assert new_prober == checker_id(socket.gethostname(), follower.process.pid)
    status = httpx.get(f"{follower.url}/api/v1/registry/services/{registered.json()['id']}",
                       headers={"Authorization": f"Bearer {token}"}, timeout=5).json()  # fmt: skip
    assert status["status"] == "healthy"
