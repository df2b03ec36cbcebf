"""Prefect 3: the workloads of bench/engine.py, through Prefect's public API only.

    .bench/prefect-venv/bin/python bench/peers/prefect_workload.py --database postgresql \
        --postgres postgresql://postgres@127.0.0.1:5432/postgres [--runs 50] [--seconds 10]

Runs in its own virtual environment (bench/peers/prefect-requirements.txt; `make bench-peers`
builds it: Prefect pins its own FastAPI, so never in the project's). Its server is `prefect
server start` (API only: no UI, no analytics), started here as a child with a fresh
PREFECT_HOME and database: a PostgreSQL database created on the given server and dropped at
the end, or a SQLite file. The flows run in this process against that server, as a Prefect
worker's flow-run process runs them: each flow run is created and moved through its states
by the server's API, and its task runs report their states to the server's event stream.

"three" is an async flow awaiting 3 no-op async tasks in a row; "fan20" one task, 20 started
together with `asyncio.gather`, one more. A run is the flow called and awaited. CPU per run
counts this process and the server (every process and thread of both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from peer_common import free_port, latency, stop, throughput, tree_cpu, write

FANOUT = "asyncio.gather of 20 async tasks inside the flow"


@contextlib.contextmanager
def database(kind: str, server: str | None, folder: Path) -> Iterator[str]:
    """Prefect's database URL, fresh for this run and gone after it."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
        return
    if server is None:
        raise SystemExit("--database postgresql needs --postgres URL")
    import asyncpg  # a Prefect dependency

    name = f"prefect_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        parts = urllib.parse.urlsplit(server)
        yield parts._replace(scheme="postgresql+asyncpg", path=f"/{name}").geturl()
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def prefect_server(url: str, folder: Path) -> Iterator[str]:
    """`prefect server start` on `url`; yields the API's URL once it answers."""
    port = free_port()
    env = {
        **{k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ},
        "HOME": str(folder),
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    binary = Path(sys.executable).parent / "prefect"
    command = [str(binary), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit((folder / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not answer /api/health")
            time.sleep(0.2)
        yield api
    finally:
        stop(server)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    # Imported once the settings are in the environment: Prefect reads them at import.
    from prefect import flow, task

    @task
    async def noop() -> dict[str, Any]:
        return {}

    @flow
    async def three() -> None:
        await noop()
        await noop()
        await noop()

    @flow
    async def fan20() -> None:
        await noop()
        await asyncio.gather(*(noop() for _ in range(20)))
        await noop()

    flows = {"three": three, "fan20": fan20}

    async def run(name: str) -> None:
        await flows[name]()  # a failed flow raises

    result: dict[str, Any] = {"latency": {}}
    for name in ("three", "fan20"):
        result["latency"][name] = await latency(run, name, args.runs)
        print(f"prefect {name}: {result['latency'][name]}", file=sys.stderr)
    if args.seconds > 0:
        result["throughput"] = await throughput(
            run, args.clients, args.seconds, tree_cpu,
            "the Prefect server and this process (flows and starters)",
        )  # fmt: skip
        print(f"prefect throughput: {result['throughput']}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres", help="a server the benchmark may create databases on")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10, help="0 skips throughput")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--json", type=Path, help="where to write the result (default stdout)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="prefect-bench-") as name,
        database(args.database, args.postgres, Path(name)) as url,
        prefect_server(url, Path(name)) as api,
    ):
        os.environ.update(
            PREFECT_HOME=str(Path(name) / "client"),
            PREFECT_API_URL=api,
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        measured = asyncio.run(measure(args))
    write(
        {
            "engine": "prefect",
            "label": "Prefect",
            "database": args.database,
            "version": f"prefect {version('prefect')}",
            "python": platform.python_version(),
            "fanout": FANOUT,
            "start": "the flow called and awaited in the flow-run process, against the server",
            **measured,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
