"""The engine's latency, throughput and CPU cost: in-process, and over HTTP against a real server.

    .venv/bin/python bench/engine.py [--postgres postgresql://postgres@127.0.0.1/postgres]
        [--mode both|inprocess|http] [--runs 200] [--seconds 20] [--json results.json]

Two ways to drive the same engine, each on a fresh database (a SQLite file in a temporary
folder; with --postgres, also a PostgreSQL database created and dropped on that server):

- inprocess: the engine's Python API with no HTTP: a Database, the migrations, the catalog,
  `RunService.trigger` and the embedded `Worker` in this process (`embedded_engine`, the one
  function that wires them). A run's end is seen at the commit that records it, through a
  projection that only schedules a callback for after that commit: no polling, no extra read.
- http: a real `workflow-engine serve` process (a token, the whole middleware stack, its
  embedded worker). Each client triggers with `POST /api/v1/workflows/trigger?wait=60`: a 200
  carrying a finished run ends it there; otherwise (a 202, from a server without the wait)
  the run's log stream, which ends when the run does, tells when it finished.

Workloads, the same in both and in bench/peers/dbos_workload.py:

1. Latency of N sequential runs after 10 warm-up runs, median and p99: "three" (3 no-op steps
   in a row) and "fan20" (a step, 20 steps needing it, a step joining them).
2. "three" runs completed per second with --clients concurrent clients, each triggering one
   and waiting for its end, for --seconds; and the CPU ms each run cost: in-process, this
   process's CPU time (clients included); over HTTP, the server's (and extra workers') CPU
   time, clients excluded. The database server's CPU is counted in neither.
3. Over HTTP on PostgreSQL only (skip with --no-extras): runs/s with 1 and 2 extra
   `workflow-engine worker` processes, and status read latency at 10 and 10,000 run events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
FANOUT = "20 steps needing the first, a join step needing all 20 (the DAG's own fan-out)"
FINISHED = ("completed", "failed", "cancelled")
WARM_UP = 10
WAIT_SECONDS = 60

Run = Callable[[str], Awaitable[None]]
"""Runs the named workflow to its end; raises SystemExit when it did not complete."""


def write_project(root: Path) -> tuple[Path, Path]:
    """The bench's node module and workflow files under `root`: (modules dir, flows dir)."""
    (root / "modules").mkdir()
    (root / "flows").mkdir()
    (root / "modules" / "bench_nodes.py").write_text(NODES)
    for name, flow in FLOWS.items():
        (root / "flows" / f"{name}.yaml").write_text(flow)
    return root / "modules", root / "flows"


# --- measuring, whatever drives the engine ---------------------------------------------------


async def timed(run: Run, name: str) -> float:
    started = time.perf_counter()
    await run(name)
    return time.perf_counter() - started


async def latency(run: Run, name: str, runs: int) -> dict[str, Any]:
    for _ in range(WARM_UP):  # connections, caches, first compilations
        await run(name)
    samples = sorted([await timed(run, name) for _ in range(runs)])
    return {
        "runs": runs,
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[max(int(len(samples) * 0.99) - 1, 0)] * 1000,
    }


async def throughput(
    run: Run, clients: int, seconds: float, cpu: Callable[[], float], cpu_scope: str
) -> dict[str, Any]:
    done = 0
    deadline = 0.0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await run("three")
            done += 1

    for _ in range(WARM_UP):
        await run("three")
    cpu_before = cpu()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(loop() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    used = cpu() - cpu_before
    return {
        "clients": clients,
        "seconds": elapsed,
        "runs": done,
        "runs_per_s": done / elapsed,
        "cpu_ms_per_run": used * 1000 / max(done, 1),
        "cpu_scope": cpu_scope,
    }


def own_cpu() -> float:
    """This process's CPU seconds, every thread."""
    times = os.times()
    return times.user + times.system


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by `pids` and their descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
        # fields[0] is the state (field 3 of stat(5)): ppid is field 4, utime 14, stime 15.
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    wanted = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in wanted if pid in stats)


# --- in-process ------------------------------------------------------------------------------


@asynccontextmanager
async def embedded_engine(database_url: str) -> AsyncIterator[Run]:
    """The engine in this process, wired as the server wires it (bootstrap/engine_services.py)
    minus HTTP: migrations, a Database, the catalog with the bench's nodes and definitions,
    `RunService` and one embedded `Worker` with the server's default options (16 steps at
    once, a pool of 10 connections). Yields `run(name)`.

    The only code here that touches the engine's Python API: when `Worker`, `RunService` or
    the queue change, this is what to adapt."""
    from workflow_engine.auth.accounts import create_tenant
    from workflow_engine.bootstrap.read_models import register_read_models
    from workflow_engine.config import to_async_url
    from workflow_engine.db import Database
    from workflow_engine.db.migrate import upgrade
    from workflow_engine.engine.catalog import build_catalog
    from workflow_engine.engine.runs import Origin, RunService
    from workflow_engine.engine.worker import Worker, WorkerOptions
    from workflow_engine.events import registry as projections
    from workflow_engine.nodes import registry as nodes
    from workflow_engine.observability.logging import configure_logging

    class Finishes:
        """Resolves a waiter once the worker's transition that ended its run has committed
        (the worker's in-process signal: nothing is read or written for it)."""

        def __init__(self) -> None:
            self.waiting: dict[str, asyncio.Future[str]] = {}
            self.early: dict[str, str] = {}  # ended before anyone waited

        def ended(self, run: Any) -> None:
            run_id, status = str(run.id), str(run.status)
            future = self.waiting.pop(run_id, None)
            if future is None:
                self.early[run_id] = status
            elif not future.done():
                future.set_result(status)

        async def wait(self, run_id: str) -> str:
            if run_id in self.early:
                return self.early.pop(run_id)
            future = self.waiting[run_id] = asyncio.get_running_loop().create_future()
            try:
                return await asyncio.wait_for(future, WAIT_SECONDS)
            finally:
                self.waiting.pop(run_id, None)

    configure_logging("warning", "console")
    register_read_models(projections)
    url = to_async_url(database_url)
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop: not in this one
    db = Database(url)
    await db.detect_row_level_security()  # as the server does: tenant transactions use it
    with tempfile.TemporaryDirectory() as folder:
        modules, flows = write_project(Path(folder))
        sys.path.insert(0, str(modules))
        catalog = build_catalog(nodes, node_modules=["bench_nodes"], workflows_dir=flows)
    tenant = (await create_tenant(db, f"bench-{uuid.uuid4().hex[:6]}", actor="bench")).id
    runs = RunService(db, catalog)
    worker = Worker(db, nodes, WorkerOptions())
    finishes = Finishes()
    origin = Origin("bench", None)

    async def run(name: str) -> None:
        record, _ = await runs.trigger(tenant, name, {}, version=None, idempotency_key=None,
                                       origin=origin)  # fmt: skip
        try:
            status = await finishes.wait(str(record.id))
        except TimeoutError:
            status = (await runs.get(tenant, record.id)).status
        if status != "completed":
            raise SystemExit(f"run {record.id} of {name} did not complete: {status}")

    worker.on_run_finished(finishes.ended)
    await worker.start()
    try:
        yield run
    finally:
        await worker.stop(grace=5)
        await db.dispose()


async def measure_inprocess(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with embedded_engine(database_url) as run:
        result: dict[str, Any] = {"latency": {}}
        for name in ("three", "fan20"):
            result["latency"][name] = await latency(run, name, args.runs)
        if args.seconds > 0:
            result["throughput"] = await throughput(
                run, args.clients, args.seconds, own_cpu, "this process (clients included)"
            )
        return result


# --- over HTTP -------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    pids: list[int]


@contextmanager
def server(database_url: str | None, workers: int = 0) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        modules, flows = write_project(root)
        port = free_port()
        env = process_env(
            root, database_url, PORT=str(port), PYTHONPATH=str(modules),
            NODE_MODULES="bench_nodes", WORKFLOWS_DIR=str(flows),
        )  # fmt: skip
        processes = [start("serve", root, env, "server")]
        try:
            asyncio.run(wait_healthy(f"http://127.0.0.1:{port}", processes[0],
                                     root / "server.log"))  # fmt: skip
            processes += [start("worker", root, env, f"worker{n}") for n in range(workers)]
            time.sleep(1.5 if workers else 0)  # let the extra workers connect
            yield Server(f"http://127.0.0.1:{port}", [p.pid for p in processes])
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


@dataclass
class HttpClient:
    """Triggers with `?wait=` and tells how each run's end was learnt."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    ends: dict[str, int] = field(default_factory=lambda: {"wait_answer": 0, "log_stream": 0})

    async def run(self, name: str) -> None:
        response = await self.client.post(
            "/api/v1/workflows/trigger", headers=self.headers,
            params={"wait": str(WAIT_SECONDS)}, json={"workflow_name": name},
        )  # fmt: skip
        response.raise_for_status()
        body = response.json()
        if response.status_code == 200 and body.get("status") in FINISHED:
            self.ends["wait_answer"] += 1
            if body["status"] != "completed":
                raise SystemExit(f"a run did not complete: {body}")
            return
        self.ends["log_stream"] += 1
        links = body.get("links") or {}
        logs = links.get("logs") or f"/api/v1/workflows/{body['workflow_id']}/logs"
        ended = ""
        async with self.client.stream("GET", logs, headers=self.headers,
                                      params={"follow": "true"}) as stream:  # fmt: skip
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                if line.startswith("data:") and '"status"' in line:
                    ended = line
        if '"completed"' not in ended:  # an error must not count as a fast completion
            raise SystemExit(f"a run did not complete: {ended or 'no end event'}")


@asynccontextmanager
async def http_client(base: str) -> AsyncIterator[HttpClient]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        yield HttpClient(client, await login(client))


async def measure_http(
    served: Server, args: argparse.Namespace, latencies: bool = True
) -> dict[str, Any]:
    async with http_client(served.base) as client:
        result: dict[str, Any] = {}
        if latencies:
            result["latency"] = {}
            for name in ("three", "fan20"):
                result["latency"][name] = await latency(client.run, name, args.runs)
        if args.seconds > 0:
            scope = "the server process" + (" and worker processes" if len(served.pids) > 1
                                            else "")  # fmt: skip
            result["throughput"] = await throughput(
                client.run, args.clients, args.seconds,
                lambda: processes_cpu(served.pids), scope + " (clients excluded)",
            )  # fmt: skip
        result["run_ends"] = client.ends
        return result


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


# --- the command -----------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, postgres: str | None) -> Iterator[str]:
    """A URL of an empty database of `kind`, gone afterwards."""
    if kind == "postgresql":
        assert postgres is not None
        with throwaway_postgres(postgres) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'engine.db'}"


def record(mode: str, database: str, measured: dict[str, Any]) -> dict[str, Any]:
    from workflow_engine.version import __version__

    return {
        "engine": f"ours-{mode}",
        "label": {"inprocess": "ours in-process", "http": "ours over HTTP"}[mode],
        "database": database,
        "version": f"workflow-engine {__version__}",
        "python": platform.python_version(),
        "fanout": FANOUT,
        "start": {
            "inprocess": "RunService.trigger, the end seen at its commit",
            "http": f"POST /api/v1/workflows/trigger?wait={WAIT_SECONDS}, else the "
            "run's log stream",
        }[mode],
        **measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a server the benchmark may create databases on")
    parser.add_argument("--mode", choices=("both", "inprocess", "http"), default="both")
    parser.add_argument("--database", choices=("all", "sqlite", "postgresql"), default="all",
                        help="all: SQLite, and PostgreSQL when --postgres is given")  # fmt: skip
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="0 skips throughput")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the worker-process scaling and status reads")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.database == "postgresql" and not args.postgres:
        parser.error("--database postgresql needs --postgres")
    databases = {"all": ["sqlite"] + (["postgresql"] if args.postgres else []),
                 "sqlite": ["sqlite"], "postgresql": ["postgresql"]}[args.database]  # fmt: skip
    modes = ["inprocess", "http"] if args.mode == "both" else [args.mode]
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")

    records = []
    for database in databases:
        for mode in modes:
            with fresh_database(database, args.postgres) as url:
                if mode == "inprocess":
                    measured = asyncio.run(measure_inprocess(url, args))
                else:
                    with server(url) as served:
                        measured = asyncio.run(measure_http(served, args))
            records.append(record(mode, database, measured))
            print(f"measured {mode} on {database}", file=sys.stderr, flush=True)
    print("| mode | database | workflow | runs | median ms | p99 ms |\n|---|---|---|---|---|---|")
    for rec in records:
        for name, lat in rec["latency"].items():
            print(f"| {rec['label']} | {rec['database']} | {name} | {lat['runs']} "
                  f"| {lat['median_ms']:.1f} | {lat['p99_ms']:.1f} |")  # fmt: skip
    if args.seconds > 0:
        print("\n| mode | database | worker processes | clients | completed runs/s "
              "| CPU ms/run |\n|---|---|---|---|---|---|")  # fmt: skip
        for rec in records:
            tp = rec["throughput"]
            print(f"| {rec['label']} | {rec['database']} | embedded | {tp['clients']} "
                  f"| {tp['runs_per_s']:.0f} | {tp['cpu_ms_per_run']:.2f} |")  # fmt: skip
        if "http" in modes and args.postgres and not args.no_extras:
            extras = []
            for extra in (1, 2):
                with throwaway_postgres(args.postgres) as fresh, server(fresh, extra) as served:
                    measured = asyncio.run(measure_http(served, args, latencies=False))
                tp = measured["throughput"]
                extras.append({"extra_workers": extra, **tp})
                print(f"| ours over HTTP | postgresql | embedded + {extra} | {tp['clients']} "
                      f"| {tp['runs_per_s']:.0f} | {tp['cpu_ms_per_run']:.2f} |")  # fmt: skip
            records.append({"engine": "ours-http", "database": "postgresql",
                            "worker_scaling": extras})  # fmt: skip
    if "http" in modes and args.postgres and not args.no_extras:
        print("\n| database | run events | status median ms |\n|---|---|---|")
        with throwaway_postgres(args.postgres) as fresh, server(fresh) as served:
            small, big = asyncio.run(status_latency(served.base, fresh))
        print(f"| PostgreSQL | ~10 | {small:.2f} |\n| PostgreSQL | ~10,000 | {big:.2f} |")
        records.append({"engine": "ours-http", "database": "postgresql",
                        "status_read_ms": {"events_10": small, "events_10000": big}})  # fmt: skip
    for rec in records:
        if "run_ends" in rec:
            print(f"\n{rec['label']} {rec['database']}: run ends learnt {rec['run_ends']}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
