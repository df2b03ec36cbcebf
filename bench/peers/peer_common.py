"""What the peers' workloads share, standard library only: each peer's virtual environment
imports it from this folder (the scripts run as files, so this folder is on `sys.path`).

The measuring is the same as bench/engine.py's and dbos_workload.py's: 10 warm-up runs, then
N sequential runs (median and p99); then `clients` concurrent loops for `seconds`, each
starting a 3-step run and waiting for its end, with the CPU that cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

WARM_UP = 10

Run = Callable[[str], Awaitable[None]]
"""Runs the named workflow ("three" or "fan20") to its end; raises when it did not complete."""


def summary(samples: list[float]) -> dict[str, Any]:
    """Median and p99 in ms, p99 taken as bench/engine.py takes it."""
    samples = sorted(samples)
    return {
        "runs": len(samples),
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[max(int(len(samples) * 0.99) - 1, 0)] * 1000,
    }


async def latency(run: Run, name: str, runs: int) -> dict[str, Any]:
    for _ in range(WARM_UP):
        await run(name)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await run(name)
        samples.append(time.perf_counter() - started)
    return summary(samples)


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

    for _ in range(WARM_UP):  # the same warm state as the latency phase leaves
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


def tree_cpu(root: int | None = None) -> float:
    """CPU seconds used so far by `root` (this process by default) and its descendants: the
    peer's server is this process's child, so its CPU counts with the workers'."""
    root = os.getpid() if root is None else root
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    wanted = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in wanted if pid in stats)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def write(record: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(record, indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        print(text)
