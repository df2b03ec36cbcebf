"""How long a standalone worker takes to start: from its process's start to "worker started".

    .venv/bin/python bench/worker_startup.py [--runs 10] [--postgres URL] [--fresh]

Migrates a database once (a SQLite file in a temporary folder, or with `--postgres` a throwaway
database on that server), then starts the installed `workflow-engine worker` `--runs` times,
one at a time, and stops each with SIGINT as soon as it logs "worker started" (its claim loop
polls right after that line). With `--fresh` each run gets an empty database instead, so every
start migrates it: a first start rather than a restart.

For each start: the wall time to that line, and the CPU time the process had used by then
(its own and the forked migration child's it waited for, from /proc/<pid>/stat). The machine
is shared and noisy, so two yardsticks run before each start and every figure is also given
as a ratio to theirs: `python -c pass` (the interpreter alone) and `workflow-engine version`
(the CLI's imports: the floor of every command). PYTHONPATH is passed on, so another checkout
can be measured with the same environment (`PYTHONPATH=/tmp/old/src`). Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import process_env, throwaway_postgres

READY = "worker started"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Start:
    wall: float  # seconds from Popen to the ready line
    cpu: float  # seconds of CPU the process and its waited-for children used until then


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid`, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return sum(int(value) for value in fields[11:15]) / TICKS


def bin_dir() -> Path:
    return Path(sys.executable).parent


def worker_start(env: dict[str, str]) -> Start:
    """Start a worker, wait for its ready line, stop it; its start's wall and CPU time."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(bin_dir() / "workflow-engine"), "worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    try:
        for line in process.stdout:
            if READY in line:
                wall = time.perf_counter() - started
                cpu = cpu_seconds(process.pid)
                break
            seen.append(line)
        else:
            raise SystemExit("the worker exited before it was ready:\n" + "".join(seen))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise SystemExit(f"the worker exited with {process.returncode}")
    return Start(wall, cpu)


def yardstick(*command: str, env: dict[str, str] | None = None) -> Start:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    # Its CPU comes with the wait's rusage: the process is gone from /proc by then.
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    return Start(wall, usage.ru_utime + usage.ru_stime)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [str(bin_dir() / "workflow-engine"), "migrate"], env=env, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


@contextlib.contextmanager
def database(work: Path, postgres: str | None, name: str) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{work / name}.db"
    else:
        with throwaway_postgres(postgres) as url:
            yield url


def environment(work: Path, url: str) -> dict[str, str]:
    env = process_env(work, url, LOG_LEVEL="info")
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def summary(name: str, starts: list[Start], python: list[Start], cli: list[Start]) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    wall = [start.wall for start in starts]
    cpu = [start.cpu for start in starts]
    python_wall = med([start.wall for start in python])
    cli_wall = med([start.wall for start in cli])
    cli_cpu = med([start.cpu for start in cli])
    return (
        f"| {name} | {med(wall):.2f} s ({min(wall):.2f} to {max(wall):.2f}) | {med(cpu):.2f} s "
        f"| {med(wall) / python_wall:.0f} | {med(wall) / cli_wall:.2f} "
        f"| {med(cpu) / cli_cpu:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="Starts measured.")
    parser.add_argument("--postgres", help="A PostgreSQL server URL to make databases on.")
    parser.add_argument("--fresh", action="store_true", help="An empty database for each start.")
    args = parser.parse_args()
    kind = "PostgreSQL" if args.postgres else "SQLite"
    starts: list[Start] = []
    python: list[Start] = []
    cli: list[Start] = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        with contextlib.ExitStack() as stack:
            shared = None if args.fresh else stack.enter_context(
                database(work, args.postgres, "shared")
            )  # fmt: skip
            if shared is not None:
                migrate(environment(work, shared))
                worker_start(environment(work, shared))  # unmeasured: bytecode, file cache
            for run in range(args.runs):
                with contextlib.ExitStack() as per_run:
                    url = shared or per_run.enter_context(
                        database(work, args.postgres, f"fresh{run}")
                    )
                    env = environment(work, url)
                    # Side by side, so that the machine's load weighs on all three alike.
                    python.append(yardstick(sys.executable, "-c", "pass"))
                    cli.append(yardstick(str(bin_dir() / "workflow-engine"), "version", env=env))
                    starts.append(worker_start(env))
    name = f"worker, {'first start' if args.fresh else 'restart'} ({kind})"
    python_wall = statistics.median(start.wall for start in python)
    cli_wall = statistics.median(start.wall for start in cli)
    print(
        f"yardsticks (medians of {args.runs}): `python -c pass` {python_wall * 1000:.0f} ms, "
        f"`workflow-engine version` {cli_wall:.2f} s "
        f"({statistics.median(start.cpu for start in cli):.2f} s CPU)\n"
    )
    print(
        "| start | to ready: median (min to max) | CPU to ready | ÷ `python -c pass` "
        "| ÷ `version` | CPU ÷ `version` CPU |\n|---|---|---|---|---|---|"
    )
    print(summary(name, starts, python, cli))


if __name__ == "__main__":
    main()
