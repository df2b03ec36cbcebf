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
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from harness import free_port, login, process_env, start, throwaway_postgres, wait_healthy


async def measure(base: str, subscribers: int, events: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        headers = await login(client)
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


def run(label: str, database_url: str | None, subscribers: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = start("serve", Path(directory), process_env(Path(directory), database_url,
                                                           PORT=str(port)), "server")  # fmt: skip
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
        with throwaway_postgres(args.postgres) as url:
            run("PostgreSQL", url, args.subscribers, args.events)


if __name__ == "__main__":
    main()
