"""What the request path costs: authenticated reads and the middleware against a bare route.

    .venv/bin/python bench/middleware.py [--seconds 15] [--concurrency 16]
        [--postgres postgresql://postgres@127.0.0.1/postgres] [--redis redis://127.0.0.1:6379/15]

Every target is a real server process on loopback, driven by the same client: `--concurrency`
keep-alive HTTP/1.1 connections, each sending its next request when the last answer is in, for
`--seconds` (closed loop: the most the target answers). Rows:

1. bare: a Starlette app with one route answering a small JSON document — no middleware, no
   database: the floor of uvicorn plus the client, the yardstick of the ratios.
2. /health: our server's liveness route — the whole middleware stack (correlation id, access
   log and metrics, security headers, error handling, rate limiting of an anonymous caller,
   body checks) but no authentication and no database.
3. status: `GET /api/v1/workflows/{id}/status` with a bearer token — the middleware stack,
   the token's verification and standing, the rate limiter per principal, and the run's read;
   on SQLite (the embedded default) and, with `--postgres`, on a throwaway PostgreSQL
   database.
4. with `--postgres` and `--redis`: the status read with the rate limits kept in Redis (what
   several processes need) by one process and by `serve --workers 2`, and their ratio; and
   where the CPU went while each ran (from /proc: the server's processes, PostgreSQL's,
   Redis, this client, the rest of the machine), per request, with the cores kept busy. Two
   processes can gain at most what the server's share leaves room for on the machine's cores.
   With `--wrk` (when `wrk` is installed, e.g. Debian's package), these two rows are also
   driven by wrk, a load generator in C whose CPU per request is a few microseconds where this
   client's is a hundred or more: what the server's processes gain with the client's share
   left to them (wrk's CPU counts under "other").

Then the status read at a steady 500 requests/s (open loop: each request has its scheduled
time and its latency counts from it, so a stall shows as latency instead of fewer requests),
and the idle server's resident memory (VmRSS from /proc) with its embedded worker.

The client runs on the same machine and takes a share of its CPU: compare the rows with each
other, as ratios, not with other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from harness import free_port, login, process_env, start, throwaway_postgres, wait_healthy

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def status(request):
    return JSONResponse({"workflow_id": request.path_params["id"], "status": "completed"})


app = Starlette(routes=[Route("/status/{id}", status)])
"""
STEADY_RATE = 500  # requests per second


class Connection:
    """A bare HTTP/1.1 keep-alive connection over asyncio streams: httpx would cost more CPU
    than the servers under test, and the client shares their machine."""

    def __init__(self, base: str, path: str, headers: dict[str, str]) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{port}\r\n{head}\r\n".encode()
        self.path = path

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.writer.close()

    async def get(self) -> None:
        self.writer.write(self.request)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        if b" 200 " not in status_line:
            raise SystemExit(f"{self.path} answered {status_line!r}")


async def closed_loop(
    base: str, path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Requests per second and latencies with `concurrency` requests always in flight."""
    latencies: list[float] = []

    async def one_connection(stop: float, record: bool) -> None:
        async with Connection(base, path, headers) as connection:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                await connection.get()
                if record:
                    latencies.append(time.perf_counter() - started)

    await one_connection(time.perf_counter() + 1, record=False)  # warm up
    began = time.perf_counter()
    stop = began + seconds
    await asyncio.gather(*(one_connection(stop, record=True) for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def steady(
    base: str, path: str, headers: dict[str, str], seconds: float, rate: int, connections: int = 16
) -> list[float]:
    """Latencies at a steady `rate`, each counted from the request's scheduled time."""
    latencies: list[float] = []
    began = time.perf_counter() + 0.5
    total = int(rate * seconds)

    async def one_connection(offset: int) -> None:
        async with Connection(base, path, headers) as connection:
            for n in range(offset, total, connections):
                scheduled = began + n / rate
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                await connection.get()
                latencies.append(time.perf_counter() - scheduled)

    await asyncio.gather(*(one_connection(offset) for offset in range(connections)))
    return latencies


def wrk(
    url: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 (seconds) of `wrk` holding `concurrency` connections
    busy for `seconds` with one thread."""
    arguments = [f"-H{name}: {value}" for name, value in headers.items()]
    found = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", *arguments, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in found:
        raise SystemExit(f"wrk saw answers other than 2xx:\n{found}")
    rate = float(found.split("Requests/sec:")[1].split()[0])
    percentiles = {
        line.split()[0]: _wrk_seconds(line.split()[1])
        for line in found.splitlines() if line.strip().startswith(("50%", "99%"))
    }  # fmt: skip
    return rate, percentiles["50%"], percentiles["99%"]


def _wrk_seconds(value: str) -> float:
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * scale
    raise ValueError(f"not a wrk duration: {value}")


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.99 * (len(ordered) - 1))]


def row(name: str, rps: float, latencies: list[float], bare_rps: float | None) -> str:
    ratio = f"1/{bare_rps / rps:.1f}" if bare_rps else "1"
    return (f"| {name} | {rps:,.0f} | {ratio} | {statistics.median(latencies) * 1000:.2f} ms "
            f"| {p99(latencies) * 1000:.2f} ms |")  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command name) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            found.append((int(entry.name), int(stat.rsplit(")", 1)[1].split()[1]), name))
    return found


class CpuShares:
    """CPU seconds spent while a target runs, by who spent them: the server (the process and
    its children), PostgreSQL, Redis, this client, and everything else on the machine."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        """Each process's kind and CPU seconds so far (this client as pid 0)."""
        processes = _processes()
        family = {self.server_pid}
        for _ in range(3):  # the supervisor's children (and theirs)
            family |= {pid for pid, parent, _ in processes if parent in family}
        found: dict[int, tuple[str, float]] = {0: ("client", time.process_time())}
        for pid, _, name in processes:
            if pid == os.getpid():
                continue
            kind = ("server" if pid in family else "postgresql" if name.startswith("postgres")
                    else "redis" if name.startswith("redis") else "other")  # fmt: skip
            found[pid] = (kind, _cpu_seconds(pid))
        return found

    def __enter__(self) -> CpuShares:
        self._before = self._snapshot()
        return self

    def __exit__(self, *_exc: object) -> None:
        # Per process, so one that ends meanwhile takes nothing away (its last share is lost:
        # /proc forgets it) and one that starts counts from zero.
        self.spent = dict.fromkeys(("server", "postgresql", "redis", "client", "other"), 0.0)
        for pid, (kind, seconds) in self._snapshot().items():
            self.spent[kind] += seconds - self._before.get(pid, (kind, 0.0))[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def bare_server(work: Path) -> Iterator[str]:
    (work / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(work)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level",
         "warning", "--no-access-log"], env=env,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/status/x")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


@contextlib.asynccontextmanager
async def our_server(
    work: Path, database_url: str | None, *args: str, **env: str
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes], dict[str, str], str]]:
    """A server with a finished run: its base URL, process, auth headers and status path."""
    port = free_port()
    data_dir = work / f"server-{port}"
    data_dir.mkdir()
    environment = process_env(data_dir, database_url, PORT=str(port), LOG_LEVEL="warning", **env)
    server = start("serve", data_dir, environment, "server", *args)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, server, data_dir / "server.log")
        async with httpx.AsyncClient(base_url=base) as client:
            headers = await login(client)
            triggered = await client.post(
                "/api/v1/workflows/trigger?wait=10", headers=headers,
                json={"workflow_name": "order_summary",
                      "data": {"customer": "Ada", "items": [{"name": "Manual", "amount": 1}]}},
            )  # fmt: skip
            status_path = triggered.json()["links"]["status"]
            assert (await client.get(status_path, headers=headers)).json()["status"] == "completed"
        yield base, server, headers, status_path
    finally:
        server.terminate()
        server.wait()


async def measure(args: argparse.Namespace, url: str | None) -> None:
    seconds, concurrency = args.seconds, args.concurrency
    rows: list[str] = []
    steady_rows: list[str] = []
    notes: list[str] = []
    cpu_rows: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        with bare_server(work) as base:
            bare_rps, latencies = await closed_loop(base, "/status/a-run-id", {}, seconds,
                                                    concurrency)  # fmt: skip
        rows.append(row("bare Starlette route", bare_rps, latencies, None))

        async with our_server(work, None) as (base, server, headers, status_path):
            await asyncio.sleep(3)  # idle: the worker and the pollers at rest
            notes.append(f"idle server with its embedded worker (SQLite): "
                         f"{rss_mb(server.pid):.0f} MB RSS")  # fmt: skip
            rps, latencies = await closed_loop(base, "/health", {}, seconds, concurrency)
            rows.append(row("/health (middleware, no auth, no database)", rps, latencies,
                            bare_rps))  # fmt: skip
            rps, latencies = await closed_loop(base, status_path, headers, seconds, concurrency)
            rows.append(row("authenticated status read (SQLite)", rps, latencies, bare_rps))
            latencies = await steady(base, status_path, headers, seconds, STEADY_RATE)
            steady_rows.append(f"| status read (SQLite) | {STEADY_RATE} | "
                               f"{p99(latencies) * 1000:.2f} ms |")  # fmt: skip

        if url:
            async with our_server(work, url) as (base, _server, headers, status_path):
                rps, latencies = await closed_loop(base, status_path, headers, seconds,
                                                   concurrency)  # fmt: skip
                rows.append(row("authenticated status read (PostgreSQL)", rps, latencies,
                                bare_rps))  # fmt: skip
                latencies = await steady(base, status_path, headers, seconds, STEADY_RATE)
                steady_rows.append(f"| status read (PostgreSQL) | {STEADY_RATE} | "
                                   f"{p99(latencies) * 1000:.2f} ms |")  # fmt: skip
            if args.redis:
                shared = {"RATE_LIMIT_STORAGE_URL": args.redis}
                for client in ("this client", "wrk") if args.wrk else ("this client",):
                    measured: dict[int, float] = {}
                    for workers in (1, 2):
                        async with our_server(work, url, "--workers", str(workers), **shared) as (
                            base, server, headers, status_path
                        ):  # fmt: skip
                            with CpuShares(server.pid) as cpu:
                                if client == "wrk":
                                    rps, p50, p99_ = wrk(base + status_path, headers, seconds,
                                                         concurrency)  # fmt: skip
                                else:
                                    rps, latencies = await closed_loop(
                                        base, status_path, headers, seconds, concurrency
                                    )
                                    p50, p99_ = statistics.median(latencies), p99(latencies)
                        measured[workers] = rps
                        rows.append(f"| status read (PostgreSQL, limits in Redis), --workers "
                                    f"{workers}, {client} | {rps:,.0f} | 1/{bare_rps / rps:.1f} "
                                    f"| {p50 * 1000:.2f} ms | {p99_ * 1000:.2f} ms |")  # fmt: skip
                        requests = rps * seconds
                        cpu_rows.append(
                            f"| --workers {workers}, {client} | "
                            + " | ".join(f"{cpu.spent[kind] / requests * 1e6:,.0f}" for kind in
                                         ("server", "postgresql", "redis", "client", "other"))
                            + f" | {sum(cpu.spent.values()) / seconds:.2f} |"
                        )  # fmt: skip
                    notes.append(f"--workers 2 ÷ --workers 1 (PostgreSQL, limits in Redis, "
                                 f"{client}): {measured[2] / measured[1]:.2f} times")  # fmt: skip
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{concurrency} in flight, {seconds:g} s each")  # fmt: skip
    print("| target | requests/s | ÷ bare | p50 | p99 |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| at a steady rate | requests/s | p99 |\n|---|---|---|\n" + "\n".join(steady_rows))
    if cpu_rows:
        print("\n| status read, limits in Redis | CPU µs per request: server | PostgreSQL "
              "| Redis | client | other | cores busy |\n|---|---|---|---|---|---|---|")  # fmt: skip
        print("\n".join(cpu_rows))
    print("\n" + "\n".join(f"- {note}" for note in notes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", help="a server the benchmark may create databases on")
    parser.add_argument("--redis", help="a Redis database for the rate limits of --workers 2")
    parser.add_argument("--wrk", action="store_true", help="also drive --workers 1/2 with wrk")
    args = parser.parse_args()
    if args.wrk and shutil.which("wrk") is None:
        parser.error("--wrk needs wrk on the PATH (Debian: apt install wrk)")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(throwaway_postgres(args.postgres)) if args.postgres else None
        asyncio.run(measure(args, url))


if __name__ == "__main__":
    main()
