"""SSE delivery latency with many subscribers: a real server process, real HTTP streams.

    .venv/bin/python bench/sse_delivery.py [--subscribers 1000] [--events 20]
        [--postgres postgresql://postgres@127.0.0.1/postgres]

Starts `workflow-engine serve` (SQLite in a temporary directory, and a throwaway PostgreSQL
database when given), opens N `GET /api/v1/events/stream` connections, then appends events
one at a time with `POST /events`, each carrying the time it was sent. Latency is measured per
(subscriber, event) from just before the POST to the moment the subscriber read the message.

The subscribers are bare HTTP/1.1 connections over asyncio streams in one client process
(httpx would spend more CPU parsing a thousand streams than the server spends writing them,
and client and server share the machine): each reads until the end of a message and takes its
`sent_at`. The figures still include the client's own reading of N streams.

Also reports the server's CPU time per delivered message while the events flow, and its
resident memory (VmRSS) before the subscribers connect and after the last event was delivered,
both from /proc.
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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB, as the kernel counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def subscriber(
    host: str, port: int, request: bytes, events: int, latencies: list[float],
    connected: asyncio.Event, counter: list[int], subscribers: int,
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"the stream answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # response headers
        counter[0] += 1
        if counter[0] == subscribers:
            connected.set()
        received = 0
        while received < events:
            # Chunked transfer: a chunk size line, then the chunk, which holds whole messages.
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            now = time.time()
            for line in chunk.split(b"\n"):
                if line.startswith(b"data:"):
                    latencies.append(now - json.loads(line[5:])["data"]["sent_at"])
                    received += 1
    finally:
        writer.close()


async def measure(base: str, pid: int, subscribers: int, events: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        headers = await login(client)
        aggregate = f"bench-{uuid.uuid4().hex[:8]}"
        host, port = base.removeprefix("http://").split(":")
        request = (
            f"GET /api/v1/events/stream?aggregate_id={aggregate} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nAuthorization: {headers['Authorization']}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        latencies: list[float] = []
        connected = asyncio.Event()
        counter = [0]
        idle_rss = rss_mb(pid)
        tasks = [
            asyncio.create_task(
                subscriber(
                    host, int(port), request, events, latencies, connected, counter, subscribers
                )
            )
            for _ in range(subscribers)
        ]
        await asyncio.wait_for(connected.wait(), 120)
        await asyncio.sleep(1)  # every stream is past its first read and waiting
        connected_rss = rss_mb(pid)
        cpu_before = cpu_seconds(pid)
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
        cpu = cpu_seconds(pid) - cpu_before
        final_rss = rss_mb(pid)
    latencies.sort()
    return {
        "deliveries": len(latencies),
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max": latencies[-1] * 1000,
        "seconds": elapsed,
        "cpu_us": cpu / max(len(latencies), 1) * 1e6,
        "idle_rss": idle_rss,
        "connected_rss": connected_rss,
        "final_rss": final_rss,
    }


def run(label: str, database_url: str | None, subscribers: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = start("serve", Path(directory), process_env(Path(directory), database_url,
                                                           PORT=str(port)), "server")  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_healthy(base, server, Path(directory) / "server.log"))
            result = asyncio.run(measure(base, server.pid, subscribers, events))
        finally:
            server.terminate()
            server.wait(30)
    expected = subscribers * events
    print(
        f"| {label} | {subscribers} | {events} | {result['deliveries']:,.0f} of {expected:,} | "
        f"{result['p50']:.0f} | {result['p95']:.0f} | {result['p99']:.0f} | {result['max']:.0f} "
        f"| {result['cpu_us']:.0f} | {result['idle_rss']:.0f} → {result['final_rss']:.0f} "
        f"(+{result['final_rss'] - result['idle_rss']:.0f}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--postgres", help="a server the benchmark may create a database on")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| database | subscribers | events | deliveries | p50 ms | p95 ms | p99 ms | max ms "
          "| server CPU µs per delivery | server RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    run("SQLite", None, args.subscribers, args.events)
    if args.postgres:
        with throwaway_postgres(args.postgres) as url:
            run("PostgreSQL", url, args.subscribers, args.events)


if __name__ == "__main__":
    main()
