"""A client that stops reading its stream delays no other stream, and the server does not keep
what it could not send it: memory stays bounded however much is appended meanwhile."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "Stalled-Clients-Hold-Nothing-2026"
ENV = {
    "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL, "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "1000000", "RATE_LIMIT_TENANT_BURST": "100000",
    "RATE_LIMIT_ENDPOINTS": "{}",
}  # fmt: skip
PAD = "x" * 60_000  # near the 64 KiB an event's data may hold
#: The first events fill the tail's window (16 MiB); memory is compared after it is full.
WARM_UP, MEASURED = 400, 1000


def _stream_request(server: Server, token: str) -> bytes:
    return (
        f"GET /api/v1/events/stream?aggregate_id=big HTTP/1.1\r\nHost: 127.0.0.1:{server.port}"
        f"\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def _stalled(server: Server, token: str) -> socket.socket:
    """A stream whose client reads its response's head and then nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few messages
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(_stream_request(server, token))
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


class Reader(threading.Thread):
    """A stream read as fast as it comes, until `expected` messages arrived."""

    def __init__(self, server: Server, token: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.sock.sendall(_stream_request(server, token))
        self.expected = expected
        self.received = 0
        self.stream = bytearray()

    def run(self) -> None:
        carry = b""  # too short to hold a whole `\nid: `: no line is counted twice
        while self.received < self.expected:
            data = self.sock.recv(1 << 20)
            if not data:
                return
            self.stream += data
            self.received += (carry + data).count(b"\nid: ")  # one `id:` line per message
            carry = data[-4:]

    @property
    def positions(self) -> list[int]:
        return [int(found) for found in re.findall(rb"\nid: (\d+)\r\n", self.stream)]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _append(client: httpx.Client, count: int) -> list[int]:
    positions = []
    for n in range(count):
        response = client.post(
            "/events",
            json={"aggregate_type": "load", "aggregate_id": "big", "event_type": "Padded",
                  "data": {"n": n, "pad": PAD}},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        positions.append(response.json()["position"])
    return positions


def test_a_stalled_client_delays_no_one_and_costs_bounded_memory(
    server_factory: type[Server],
) -> None:
    server = server_factory(env=ENV).start()
    assert server.process is not None
    login = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    token = login.json()["token"]
    stalled = _stalled(server, token)
    reader = Reader(server, token, WARM_UP + MEASURED)
    reader.start()
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        appended = _append(client, WARM_UP)
        before = _rss_mb(server.process.pid)
        appended += _append(client, MEASURED)
    reader.join(60)
    after = _rss_mb(server.process.pid)

    assert reader.positions == appended  # all of it, once each, in order, while one stalled
    measured_mb = MEASURED * len(PAD) / 2**20
    # Kept for the stalled client, it would be all of it; a server that keeps nothing for it
    # grows by far less than a quarter of it (the window was full before).
    assert after - before < measured_mb / 4, (before, after, measured_mb)
    stalled.close()
    assert server.stop() == 0
