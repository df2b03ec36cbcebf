"""Our engine side by side with DBOS, on the same machine and database servers, in one table.

    make bench-peers                          # builds .venv and .bench/dbos-venv first
    make bench-peers ARGS=--quick             # a smoke run: few runs, short phases
    .venv/bin/python bench/peers.py --postgres postgresql://postgres@127.0.0.1:5432/postgres \
        [--runs 100] [--seconds 20] [--clients 64] [--quick] [--json .bench/peers.json]

For each database (SQLite, then PostgreSQL when --postgres is given), one after another and
each in its own process on a fresh database: DBOS in-process (bench/peers/dbos_workload.py,
in DBOS's own virtual environment), our engine in-process, and our engine over HTTP
(bench/engine.py --mode inprocess / --mode http). The workloads are the same everywhere:
3 no-op steps in a row and a 20-way fan-out/fan-in (median and p99 of N sequential runs), and
3-step runs completed per second with 64 concurrent clients, with the CPU each run cost.

Ratios are ours ÷ DBOS: above 1 means ours is slower (latency), costlier (CPU), or, for
runs/s only, faster. The JSON (--json) holds every record, the table's rows and the settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DBOS_PYTHON = ROOT / ".bench" / "dbos-venv" / "bin" / "python"
OUR_PYTHON = ROOT / ".venv" / "bin" / "python"
DATABASES = {"sqlite": "SQLite", "postgresql": "PG"}
ENGINES = {"dbos": "DBOS", "ours-inprocess": "ours in-process", "ours-http": "ours HTTP"}
# (label, how to read it from a record, whether lower is better)
ROWS: list[tuple[str, tuple[str, ...], bool]] = [
    ("3 steps in a row, median ms", ("latency", "three", "median_ms"), True),
    ("3 steps in a row, p99 ms", ("latency", "three", "p99_ms"), True),
    ("20-way fan-out/fan-in, median ms", ("latency", "fan20", "median_ms"), True),
    ("20-way fan-out/fan-in, p99 ms", ("latency", "fan20", "p99_ms"), True),
    ("3-step runs/s, {clients} clients", ("throughput", "runs_per_s"), False),
    ("CPU ms per 3-step run", ("throughput", "cpu_ms_per_run"), True),
]


def workload(engine: str, database: str, args: argparse.Namespace, out: Path) -> list[Any]:
    """Run one engine on one fresh database in its own process; its JSON records."""
    common = [
        "--runs",
        str(args.runs),
        "--seconds",
        str(args.seconds),
        "--clients",
        str(args.clients),
        "--json",
        str(out),
    ]
    if database == "postgresql":
        common += ["--postgres", args.postgres]
    if engine == "dbos":
        if not Path(args.dbos_python).exists():
            raise SystemExit(f"no {args.dbos_python}: `make bench-peers` builds DBOS's venv")
        command = [
            args.dbos_python,
            str(BENCH / "peers" / "dbos_workload.py"),
            "--database",
            database,
            *common,
        ]
    else:
        mode = engine.removeprefix("ours-")
        python = str(OUR_PYTHON) if OUR_PYTHON.exists() else sys.executable
        command = [
            python,
            str(BENCH / "engine.py"),
            "--mode",
            mode,
            "--database",
            database,
            "--no-extras",
            *common,
        ]
    started = time.perf_counter()
    print(f"… {ENGINES[engine]} on {DATABASES[database]}", end="", flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    print(f": {time.perf_counter() - started:.0f} s", flush=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{ENGINES[engine]} on {DATABASES[database]} failed: {command}")
    records = json.loads(out.read_text())
    return records if isinstance(records, list) else [records]


def pick(record: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(
    found: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace
) -> tuple[str, list[dict[str, Any]]]:
    columns = [(engine, database) for database in DATABASES for engine in ENGINES]
    ratios = [
        (engine, database) for database in DATABASES for engine in ENGINES if engine != "dbos"
    ]
    head = ["workload"]
    head += [f"{ENGINES[e]} {DATABASES[d]}" for e, d in columns]
    head += [f"{ENGINES[e].removeprefix('ours ')} {DATABASES[d]} ÷ DBOS" for e, d in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for label, path, lower_better in ROWS:
        label = label.format(clients=args.clients)
        values = {f"{e} {d}": pick(found.get((e, d)), path) for e, d in columns}
        cells = [number(values[f"{e} {d}"]) for e, d in columns]
        row_ratios = {}
        for engine, database in ratios:
            ours, theirs = values[f"{engine} {database}"], values[f"dbos {database}"]
            ratio = ours / theirs if ours is not None and theirs else None
            row_ratios[f"{engine} {database}"] = ratio
            cells.append("—" if ratio is None else f"{ratio:.2f}x")
        rows.append(
            {
                "workload": label,
                "lower_is_better": lower_better,
                "values": values,
                "ours_over_dbos": row_ratios,
            }
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL server to create databases on")
    parser.add_argument("--runs", type=int, default=100, help="sequential runs per workflow")
    parser.add_argument("--seconds", type=float, default=20, help="the throughput phase")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="20 runs and 5 s phases")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".bench" / "peers.json",
        help="where the results go (default .bench/peers.json)",
    )
    parser.add_argument("--dbos-python", default=str(DBOS_PYTHON))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = min(args.runs, 20), min(args.seconds, 5)
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])

    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    print(
        f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {load_before[0]:.2f}; {args.runs} runs per latency, "
        f"{args.seconds:g} s throughput phases with {args.clients} clients"
    )
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        for database in databases:
            for engine in ENGINES:
                out = Path(folder) / f"{engine}-{database}.json"
                records += workload(engine, database, args, out)
    load_after = os.getloadavg()
    found = {(r["engine"], r["database"]): r for r in records if "latency" in r}
    text, rows = table(found, args)
    print()
    print(text)
    print()
    print("ours ÷ DBOS: above 1 is slower (ms) or costlier (CPU); for runs/s above 1 is faster.")
    dbos = next((r for r in records if r["engine"] == "dbos"), None)
    if dbos:
        print(f"DBOS: {dbos['version']}; fan-out: {dbos['fanout']}; start: {dbos['start']}.")
    ours = next((r for r in records if r["engine"] == "ours-inprocess"), None)
    if ours:
        print(f"Ours: {ours['version']} ({git_commit()}); fan-out: {ours['fanout']}.")
    for record in records:
        if "run_ends" in record:
            print(
                f"ours HTTP {DATABASES[record['database']]}: run ends learnt from "
                f"{record['run_ends']} (wait_answer: a 200 from ?wait=)"
            )
    print(
        "CPU: each engine's own processes over the throughput phase ÷ runs completed "
        "(in-process: clients included; HTTP: server only); the database server's CPU is "
        "in no column."
    )
    print(
        f"Load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}: "
        "the machine is shared, so compare columns of one run, not runs of different days."
    )
    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {
            "python": platform.python_version(),
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "settings": {
            "runs": args.runs,
            "seconds": args.seconds,
            "clients": args.clients,
            "quick": args.quick,
            "databases": databases,
        },
        "rows": rows,
        "records": records,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
