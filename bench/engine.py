"""The engine over HTTP, against a real server: latency, throughput, and status reads.

    .venv/bin/python bench/engine.py [--postgres postgresql://postgres@127.0.0.1/postgres]
        [--runs 200] [--seconds 20]

1. Sequential trigger -> completed latency of a 3-step no-op workflow (a token, the whole
   middleware stack, the embedded worker), SQLite and PostgreSQL: median and p99; also a
   20-way fan-out/fan-in. Completion is observed through the run's log stream, which ends
   when the run does (no polling interval in the figure).
2. Completed runs per second with 64 concurrent clients on PostgreSQL: the server's embedded
   worker alone, then with 1 and 2 extra `workflow-engine worker` processes.
3. Status read latency for a run with 10 events and one with 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from harness import free_port, login, process_env, start, throwaway_postgres, wait_healthy

NODES = """
from workflow_engine.nodes import NodeContext, node


@node("bench.noop")
async def noop(ctx: NodeContext, **values: object) -> dict:
    return {}
"""
FLOWS = {
    "three": "name: three\nsteps:\n  - {id: a, uses: bench.noop}\n"
    "  - {id: b, uses: bench.noop, needs: [a]}\n  - {id: c, uses: bench.noop, needs: [b]}\n",
    "fan20": "name: fan20\nsteps:\n  - {id: start, uses: bench.noop}\n"
    + "".join(f"  - {{id: s{n}, uses: bench.noop, needs: [start]}}\n" for n in range(20))
    + "  - {id: join, uses: bench.noop, needs: ["
    + ", ".join(f"s{n}" for n in range(20))
    + "]}\n",
}


@contextmanager
def server(database_url: str | None, workers: int = 0) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "modules").mkdir()
        (root / "flows").mkdir()
        (root / "modules" / "bench_nodes.py").write_text(NODES)
        for name, flow in FLOWS.items():
            (root / "flows" / f"{name}.yaml").write_text(flow)
        port = free_port()
        env = process_env(
            root, database_url, PORT=str(port), PYTHONPATH=str(root / "modules"),
            NODE_MODULES="bench_nodes", WORKFLOWS_DIR=str(root / "flows"),
        )  # fmt: skip
        processes = [start("serve", root, env, "server")]
        try:
            asyncio.run(wait_healthy(f"http://127.0.0.1:{port}", processes[0],
                                     root / "server.log"))  # fmt: skip
            processes += [start("worker", root, env, f"worker{n}") for n in range(workers)]
            time.sleep(1.5 if workers else 0)  # let the extra workers connect
            yield f"http://127.0.0.1:{port}"
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


async def run_once(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> float:
    """Seconds from just before the trigger to the end of the run's log stream."""
    started = time.perf_counter()
    response = await client.post("/api/v1/workflows/trigger", headers=headers,
                                 json={"workflow_name": name})  # fmt: skip
    response.raise_for_status()
    logs = response.json()["links"]["logs"]
    ended = ""
    async with client.stream("GET", logs, headers=headers, params={"follow": "true"}) as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if line.startswith("data:") and '"status"' in line:
                ended = line
    elapsed = time.perf_counter() - started
    if '"completed"' not in ended:  # an error must not count as a fast completion
        raise SystemExit(f"a run did not complete: {ended or 'no end event'}")
    return elapsed


async def latency(base: str, name: str, runs: int) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        headers = await login(client)
        for _ in range(10):  # warm-up: connections, caches, first compilations
            await run_once(client, headers, name)
        samples = sorted([await run_once(client, headers, name) for _ in range(runs)])
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


async def throughput(base: str, clients: int, seconds: float) -> float:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        headers = await login(client)
        done = 0
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await run_once(client, headers, "three")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return done / (time.perf_counter() - started)


async def status_latency(base: str, database_url: str) -> tuple[float, float]:
    """Median status read (ms) for a 10-event run and for one with 10,000 events."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        headers = await login(client)
        ids = []
        for _ in range(2):
            response = await client.post("/api/v1/workflows/trigger", headers=headers,
                                         json={"workflow_name": "three"})  # fmt: skip
            ids.append(response.json()["workflow_id"])
        await asyncio.sleep(1)
        await grow(database_url, uuid.UUID(ids[1]), 10_000)
        timings = []
        for run_id in ids:
            samples = []
            for _ in range(200):
                started = time.perf_counter()
                response = await client.get(f"/api/v1/workflows/{run_id}/status", headers=headers)
                response.raise_for_status()
                samples.append(time.perf_counter() - started)
            timings.append(statistics.median(samples) * 1000)
        return timings[0], timings[1]


async def grow(database_url: str, run_id: uuid.UUID, count: int) -> None:
    """Append `count` log events to a finished run's aggregate, as a long run would have."""
    from sqlalchemy import select

    from workflow_engine.config import to_async_url
    from workflow_engine.db import Database
    from workflow_engine.db.tables import workflow_runs
    from workflow_engine.events import EventStore, NewEvent

    db = Database(to_async_url(database_url))
    try:
        async with db.read() as conn:
            tenant = (await conn.execute(
                select(workflow_runs.c.tenant_id).where(workflow_runs.c.id == run_id)
            )).scalar_one()  # fmt: skip
        store = EventStore(db)
        for first in range(0, count, 500):
            events = [
                NewEvent("StepLogged", {"step_id": "a", "attempt": 1, "entries": [
                    {"level": "info", "message": f"line {n}", "fields": {},
                     "at": "2026-11-26T00:00:00+00:00"}]})
                for n in range(first, first + 500)
            ]  # fmt: skip
            await store.append(tenant_id=tenant, aggregate_type="runs",
                               aggregate_id=str(run_id), new_events=events,
                               expected_version=None)  # fmt: skip
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", help="a server the benchmark may create databases on")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| database | workflow | runs | median ms | p99 ms |\n|---|---|---|---|---|")
    databases: list[tuple[str, str | None]] = [("SQLite", None)]
    with contextlib_postgres(args.postgres) as postgres:
        if postgres:
            databases.append(("PostgreSQL", postgres))
        for label, url in databases:
            with server(url) as base:
                for name in ("three", "fan20"):
                    median, p99 = asyncio.run(latency(base, name, args.runs))
                    print(f"| {label} | {name} | {args.runs} | {median:.1f} | {p99:.1f} |")
        if not postgres:
            return
        print("\n| database | worker processes | clients | completed runs/s |\n|---|---|---|---|")
        for extra in (0, 1, 2):
            with throwaway_postgres(args.postgres) as fresh, server(fresh, workers=extra) as base:
                rate = asyncio.run(throughput(base, 64, args.seconds))
                print(f"| PostgreSQL | embedded + {extra} | 64 | {rate:.0f} |")
        print("\n| database | run events | status median ms |\n|---|---|---|")
        with throwaway_postgres(args.postgres) as fresh, server(fresh) as base:
            small, big = asyncio.run(status_latency(base, fresh))
            print(f"| PostgreSQL | ~10 | {small:.2f} |\n| PostgreSQL | ~10,000 | {big:.2f} |")


@contextmanager
def contextlib_postgres(base: str | None) -> Iterator[str | None]:
    if base is None:
        yield None
        return
    with throwaway_postgres(base) as url:
        yield url


if __name__ == "__main__":
    main()
