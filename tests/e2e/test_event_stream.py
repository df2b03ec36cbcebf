"""The SSE stream against real server processes (an in-process client would buffer it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, clean_environment
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.events import NewEvent, append_events

pytestmark = pytest.mark.e2e

UNLIMITED = {
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "1000000",
    "RATE_LIMIT_TENANT_BURST": "100000",
    "RATE_LIMIT_ENDPOINTS": "{}",
}
PASSWORD = "a long unusual passphrase"


def _operator_token(bin_dir: Path, server: Server) -> str:
    env = dict(clean_environment(), **server.env)
    subprocess.run(
        [str(bin_dir / "workflow-engine"), "users", "create", "--email", "ops@example.com",
         "--role", "operator", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, check=True, env=env,
        cwd=server.cwd,
    )  # fmt: skip
    login = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    return str(login.json()["token"])


def _append(client: httpx.Client, n: int, aggregate: str = "order-1") -> int:
    response = client.post(
        "/events",
        json={"aggregate_type": "order", "aggregate_id": aggregate, "event_type": "ItemAdded",
              "data": {"n": n}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return int(response.json()["position"])


def _messages(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream into messages (comments, i.e. heartbeats, skipped)."""
    message: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                yield message
            message = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            message[field] = value.removeprefix(" ")


def _read(response: httpx.Response, count: int) -> list[dict[str, str]]:
    received = []
    for message in _messages(response):
        received.append(message)
        if len(received) == count:
            break
    return received


def test_a_client_resumes_with_last_event_id_and_misses_nothing(
    installed_bin: Path, server_factory: type[Server]
) -> None:
    server = server_factory(env=UNLIMITED).start()
    token = _operator_token(installed_bin, server)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        for n in range(100):
            _append(client, n)
        with client.stream("GET", "/api/v1/events/stream?after=0&aggregate_type=order") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = _read(stream, 100)
        assert [json.loads(m["data"])["data"]["n"] for m in first] == list(range(100))
        assert all(m["event"] == "ItemAdded" for m in first)
        last_id = first[-1]["id"]
        for n in range(100, 1100):
            _append(client, n)
        with client.stream(
            "GET",
            "/api/v1/events/stream?aggregate_type=order",
            headers={"Last-Event-ID": last_id},
        ) as stream:
            resumed = _read(stream, 1000)
    numbers = [json.loads(m["data"])["data"]["n"] for m in resumed]
    assert numbers == list(range(100, 1100))
    positions = [int(m["id"]) for m in resumed]
    assert len(set(positions)) == 1000
    assert server.stop() == 0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_event_appended_by_another_process_reaches_the_stream(
    installed_bin: Path,
    server_factory: type[Server],
    database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'shared.db'}"
        if database == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    env = {**UNLIMITED, "DATABASE_URL": url, "JWT_SECRET": "s" * 40}
    reader = server_factory(env=env).start()
    writer = server_factory(env={**env, "DATA_DIR": str(tmp_path / "writer")}).start()
    token = _operator_token(installed_bin, reader)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=reader.url, headers=headers, timeout=10) as reading,
        httpx.Client(base_url=writer.url, headers=headers, timeout=10) as writing,
        reading.stream(
            "GET", "/api/v1/events/stream?aggregate_id=watched&event_type_prefix=Item"
        ) as stream,
    ):
        _append(writing, 1, aggregate="other")  # filtered out
        position = _append(writing, 2, aggregate="watched")
        [message] = _read(stream, 1)  # read timeout 10 s; delivery takes well under 1 s
    assert int(message["id"]) == position
    assert json.loads(message["data"])["aggregate_id"] == "watched"
    assert writer.stop() == 0
    assert reader.stop() == 0


def test_shutdown_ends_open_streams_and_exits_0(
    installed_bin: Path, server_factory: type[Server]
) -> None:
    server = server_factory(env={**UNLIMITED, "SHUTDOWN_TIMEOUT": "10"}).start()
    token = _operator_token(installed_bin, server)
    with (
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=20
        ) as client,
        client.stream("GET", "/api/v1/events/stream") as stream,
    ):
        assert stream.status_code == 200
        assert server.process is not None
        server.process.terminate()
        for _ in stream.iter_lines():  # ends when the server closes the stream
            pass
    assert server.process.wait(15) == 0


def test_the_stream_never_skips_an_event_committed_after_a_later_one(
    installed_bin: Path, server_factory: type[Server], fresh_postgres_url: str
) -> None:
    """T1 takes a position and stays open; T2 (an API append) commits a later one. The live
    stream must hold T2 back until T1 commits, then deliver both, T1 first."""
    server = server_factory(env={**UNLIMITED, "DATABASE_URL": fresh_postgres_url}).start()
    token = _operator_token(installed_bin, server)
    headers = {"Authorization": f"Bearer {token}"}
    tenant_id = uuid.UUID(
        httpx.get(f"{server.url}/api/v1/auth/me", headers=headers).json()["tenant_id"]
    )
    received: list[dict[str, str]] = []

    def listen() -> None:
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
            client.stream("GET", "/api/v1/events/stream?aggregate_type=order") as stream,
        ):
            for message in _messages(stream):
                received.append(message)
                if len(received) == 2:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the stream is open and at the head

    async def hold_then_commit(commit: threading.Event) -> int:
        db = Database(to_async_url(fresh_postgres_url), pool_size=1)
        try:
            async with db.write_connection() as conn:
                transaction = await conn.begin()
                [early] = await append_events(
                    conn, tenant_id=tenant_id, aggregate_type="order", aggregate_id="slow",
                    new_events=[NewEvent("ItemAdded", {"n": 1})], expected_version=0,
                )  # fmt: skip
                await asyncio.to_thread(commit.wait, 30)
                await transaction.commit()
            return early.position
        finally:
            await db.dispose()

    commit = threading.Event()
    holder_result: list[int] = []
    holder = threading.Thread(
        target=lambda: holder_result.append(asyncio.run(hold_then_commit(commit))), daemon=True
    )
    holder.start()
    time.sleep(0.5)  # T1 holds its position
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        late = _append(client, 2, aggregate="fast")
    time.sleep(2.0)
    assert received == []  # T2 is committed, but T1 may still come before it
    commit.set()
    holder.join(10)
    listener.join(10)
    assert [int(m["id"]) for m in received] == [holder_result[0], late]
    assert holder_result[0] < late
    assert server.stop() == 0
