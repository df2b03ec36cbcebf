"""DBOS in-process: the workloads of bench/engine.py, through DBOS's public API only.

    .bench/dbos-venv/bin/python bench/peers/dbos_workload.py --database sqlite
    .bench/dbos-venv/bin/python bench/peers/dbos_workload.py --database postgresql \
        --postgres postgresql://postgres@127.0.0.1:5432/postgres [--runs 200] [--seconds 20]

Runs in its own virtual environment (bench/peers/requirements.txt pins DBOS; `make
bench-peers` builds it), never in the project's. One database per invocation: a fresh SQLite
file in a temporary folder, or a fresh PostgreSQL database created on the given server and
dropped at the end; DBOS keeps everything in that system database.

1. Latency: `start_workflow_async` of an async workflow, then `handle.get_result()`, N times
   in a row after 10 warm-up runs: median and p99. "three" is 3 no-op async steps in a row;
   "fan20" is a step, 20 async steps started together with `asyncio.gather` (DBOS's documented
   way to run a workflow's steps concurrently: step ids are taken when each step is called,
   so the order replays), then a joining step.
2. Throughput: "three" workflows completed per second with `--clients` concurrent starters,
   each starting one and waiting for it, for `--seconds`; CPU ms per run is this process's
   CPU time (every thread: DBOS runs database calls on a thread pool) over that phase
   divided by the runs completed. The database server's CPU is not counted, on either side.

Writes one JSON record (the same shape bench/engine.py writes) to `--json`, or stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

FANOUT = "asyncio.gather of 20 async steps inside the workflow"
WARM_UP = 10


@DBOS.step()
async def noop() -> dict[str, Any]:
    return {}


@DBOS.workflow()
async def three() -> None:
    await noop()
    await noop()
    await noop()


@DBOS.workflow()
async def fan20() -> None:
    await noop()
    await asyncio.gather(*(noop() for _ in range(20)))
    await noop()


WORKFLOWS: dict[str, Callable[[], Awaitable[None]]] = {"three": three, "fan20": fan20}


async def run_once(name: str) -> float:
    """Seconds from just before the start to the workflow's result (an error raises)."""
    started = time.perf_counter()
    handle = await DBOS.start_workflow_async(WORKFLOWS[name])
    await handle.get_result()
    return time.perf_counter() - started


async def latency(name: str, runs: int) -> dict[str, Any]:
    for _ in range(WARM_UP):
        await run_once(name)
    samples = sorted([await run_once(name) for _ in range(runs)])
    return summary(samples)


def summary(samples: list[float]) -> dict[str, Any]:
    """Median and p99 in ms, p99 taken as bench/engine.py takes it."""
    return {
        "runs": len(samples),
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[max(int(len(samples) * 0.99) - 1, 0)] * 1000,
    }


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def throughput(clients: int, seconds: float) -> dict[str, Any]:
    done = 0
    deadline = 0.0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await run_once("three")
            done += 1

    for _ in range(WARM_UP):  # the same warm state as the latency phase leaves
        await run_once("three")
    cpu = cpu_seconds()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(loop() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    return {
        "clients": clients,
        "seconds": elapsed,
        "runs": done,
        "runs_per_s": done / elapsed,
        "cpu_ms_per_run": cpu * 1000 / max(done, 1),
        "cpu_scope": "the DBOS process (starters included)",
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"latency": {}}
    for name in ("three", "fan20"):
        result["latency"][name] = await latency(name, args.runs)
        print(f"dbos {args.database} {name}: {result['latency'][name]}", file=sys.stderr)
    if args.seconds > 0:
        result["throughput"] = await throughput(args.clients, args.seconds)
        print(f"dbos {args.database} throughput: {result['throughput']}", file=sys.stderr)
    return result


@contextlib.contextmanager
def system_database(kind: str, server: str | None) -> Iterator[str]:
    """A URL for DBOS's system database, fresh for this run and gone after it."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dbos-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'dbos.sqlite'}"
        return
    if server is None:
        raise SystemExit("--database postgresql needs --postgres URL")
    import psycopg  # a DBOS dependency
    from sqlalchemy.engine import make_url

    name = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(server).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin.render_as_string(False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres", help="a server the benchmark may create databases on")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="0 skips throughput")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--json", type=Path, help="where to write the result (default stdout)")
    args = parser.parse_args()
    with system_database(args.database, args.postgres) as url:
        config: DBOSConfig = {
            "name": "dbos-bench",
            "system_database_url": url,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        try:
            measured = asyncio.run(measure(args))
        finally:
            DBOS.destroy()
    record = {
        "engine": "dbos",
        "label": "DBOS in-process",
        "database": args.database,
        "version": f"dbos {version('dbos')}",
        "python": platform.python_version(),
        "fanout": FANOUT,
        "start": "DBOS.start_workflow_async + handle.get_result()",
        **measured,
    }
    text = json.dumps(record, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
