"""SSE delivery latency with many subscribers: a real server process, real HTTP streams.

    .venv/bin/python bench/sse_delivery.py [--subscribers 1000] [--events 20]
        [--postgres postgresql://postgres@127.0.0.1/postgres]

Starts `workflow-engine serve` (SQLite in a temporary directory, and a throwaway PostgreSQL
database when given), opens N `GET /api/v1/events/stream` connections, then appends events
one at a time with `POST /events`, each carrying the time it was sent. Latency is measured per
(subscriber, event) from just before the POST to the moment the subscriber parsed the message.
Client and server share the machine, so the figures include the client's own parsing of
N streams in one Python process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "Tiny-Latency-Probe-2026"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {
        # Only what a process needs: no setting leaks in from the caller's environment.
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        "DATA_DIR": str(data_dir),
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        "JWT_SECRET": "b" * 32,
        "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # One principal opens every stream: lift the limits this benchmark is not about.
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "RATE_LIMIT_BURST": "1000000",
        "RATE_LIMIT_TENANT_PER_MINUTE": "100000000",
        "RATE_LIMIT_TENANT_BURST": "1000000",
        "RATE_LIMIT_ENDPOINTS": "{}",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    binary = Path(sys.executable).parent / "workflow-engine"
    log = (data_dir / "server.log").open("wb")
    return subprocess.Popen([str(binary), "serve"], env=env, stdout=log, stderr=log)


async def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"the server exited; its log: {log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not become healthy")


async def measure(base: str, subscribers: int, events: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        aggregate = f"bench-{uuid.uuid4().hex[:8]}"
        latencies: list[float] = []
        connected = 0
        all_connected = asyncio.Event()

        async def subscribe() -> None:
            nonlocal connected
            received = 0
            params = {"aggregate_id": aggregate}
            async with client.stream(
                "GET", "/api/v1/events/stream", headers=headers, params=params
            ) as stream:
                stream.raise_for_status()
                connected += 1
                if connected == subscribers:
                    all_connected.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        sent = json.loads(line[5:])["data"]["sent_at"]
                        latencies.append(time.time() - sent)
                        received += 1
                        if received == events:
                            return

        tasks = [asyncio.create_task(subscribe()) for _ in range(subscribers)]
        await asyncio.wait_for(all_connected.wait(), 120)
        await asyncio.sleep(1)  # every stream is past its first read and waiting
        started = time.perf_counter()
        for _ in range(events):
            response = await client.post(
                "/events",
                headers=headers,
                json={"aggregate_type": "bench", "aggregate_id": aggregate,
                      "event_type": "Ping", "data": {"sent_at": time.time()}},
            )  # fmt: skip
            response.raise_for_status()
            await asyncio.sleep(0.5)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "deliveries": len(latencies),
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max": latencies[-1] * 1000,
        "seconds": elapsed,
    }


async def admin_sql(base: str, sql: str) -> None:
    import asyncpg

    url = make_url(base)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        database=url.database or "postgres",
    )  # fmt: skip
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run(label: str, database_url: str | None, subscribers: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = start_server(Path(directory), port, database_url)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_healthy(base, server, Path(directory) / "server.log"))
            result = asyncio.run(measure(base, subscribers, events))
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"| {label} | {subscribers} | {events} | {result['deliveries']:,.0f} | "
        f"{result['p50']:.0f} | {result['p95']:.0f} | {result['p99']:.0f} | {result['max']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--postgres", help="a server the benchmark may create a database on")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| database | subscribers | events | deliveries | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    run("SQLite", None, args.subscribers, args.events)
    if args.postgres:
        name = f"we_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(admin_sql(args.postgres, f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.postgres).set(database=name).render_as_string(False)
            run("PostgreSQL", url, args.subscribers, args.events)
        finally:
            asyncio.run(admin_sql(args.postgres, f'DROP DATABASE "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
