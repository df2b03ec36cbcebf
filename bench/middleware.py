"""What the middleware stack costs: an authenticated status read against a bare route.

    .venv/bin/python bench/middleware.py [--seconds 15] [--concurrency 16]

Three targets, each a single uvicorn process on loopback, driven by the same client (httpx,
keep-alive connections, `--concurrency` requests in flight) for `--seconds`:

1. bare: a Starlette app with one route answering a small JSON document — no middleware, no
   database: the floor of uvicorn plus the client.
2. /health: our server's liveness route — the whole middleware stack (correlation id, access
   log and metrics, security headers, error handling, rate limiting of an anonymous caller,
   body checks, tracing) but no authentication and no database.
3. status: `GET /api/v1/workflows/{id}/status` with a bearer token — the middleware stack,
   JWT verification and revocation check, the rate limiter per principal, and the run's read
   (SQLite, the embedded default).

Reports requests per second and p50/p99 latency as the client saw them. The client runs on
the same machine and takes a share of its CPU; compare the rows with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import free_port, login, process_env, start, wait_healthy

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def status(request):
    return JSONResponse({"workflow_id": request.path_params["id"], "status": "completed"})


app = Starlette(routes=[Route("/status/{id}", status)])
"""


async def drive(base: str, path: str, headers: dict[str, str], seconds: float,
                concurrency: int) -> tuple[float, list[float]]:  # fmt: skip
    """`concurrency` keep-alive connections, each sending the next request when the last
    answer is in. A bare HTTP/1.1 client over asyncio streams: httpx would cost more CPU
    than the servers under test, and the client shares their machine."""
    host, port = base.removeprefix("http://").split(":")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode()
    latencies: list[float] = []

    async def one_connection(stop: float, record: bool) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if b" 200 " not in status_line:
                    raise SystemExit(f"{path} answered {status_line!r}")
                if record:
                    latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await one_connection(time.perf_counter() + 1, record=False)  # warm up
    began = time.perf_counter()
    stop = began + seconds
    await asyncio.gather(*(one_connection(stop, record=True) for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


def row(name: str, rps: float, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (f"| {name} | {rps:,.0f} | {statistics.median(ordered) * 1000:.2f} ms "
            f"| {p99 * 1000:.2f} ms |")  # fmt: skip


async def bare(seconds: float, concurrency: int, work: Path) -> str:
    (work / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(work)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level",
        "warning", "--no-access-log", env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"{base}/status/x")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        rps, latencies = await drive(base, "/status/a-run-id", {}, seconds, concurrency)
        return row("bare Starlette route", rps, latencies)
    finally:
        process.terminate()
        await process.wait()


async def ours(seconds: float, concurrency: int, work: Path) -> list[str]:
    port = free_port()
    env = process_env(work, None, PORT=str(port), LOG_LEVEL="warning")
    server = start("serve", work, env, "server")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, server, work / "server.log")
        async with httpx.AsyncClient(base_url=base) as client:
            headers = await login(client)
            triggered = await client.post(
                "/api/v1/workflows/trigger", headers=headers,
                json={"workflow_name": "order_summary",
                      "data": {"customer": "Ada", "items": [{"name": "Manual", "amount": 1}]}},
            )  # fmt: skip
            status_path = triggered.json()["links"]["status"]
            for _ in range(100):
                if (await client.get(status_path, headers=headers)).json()["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
        health = await drive(base, "/health", {}, seconds, concurrency)
        status = await drive(base, status_path, headers, seconds, concurrency)
        return [row("/health (middleware, no auth, no database)", *health),
                row("authenticated status read (SQLite)", *status)]  # fmt: skip
    finally:
        server.terminate()
        server.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        rows = [await bare(args.seconds, args.concurrency, work)]
        rows += await ours(args.seconds, args.concurrency, work)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.concurrency} in flight, {args.seconds:g} s each")  # fmt: skip
    print("| target | requests/s | p50 | p99 |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
