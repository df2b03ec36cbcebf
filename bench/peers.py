"""Our engine beside DBOS, Temporal and Prefect 3, on the same machine and database servers.

    make bench-peers                          # builds .venv and the peers' venvs first
    make bench-peers ARGS=--quick             # a smoke run: 2 rounds, few runs, short phases
    .venv/bin/python bench/peers.py --postgres postgresql://postgres@127.0.0.1:5432/postgres \
        [--rounds 3] [--runs 30] [--seconds 10] [--clients 64] [--peers dbos,temporal,prefect]
        [--quick] [--json .bench/peers.json] [--out docs/benchmarks] [--from-json JSON]

Each system runs the same workloads in its own process (and its own virtual environment) on
a fresh database, one system at a time: 3 no-op steps in a row and a 20-way fan-out/fan-in
(median and p99 of N sequential runs after 10 warm-up runs), and 3-step runs completed per
second with 64 concurrent clients, with the CPU each run cost.

- DBOS in-process (bench/peers/dbos_workload.py) on SQLite and PostgreSQL;
- Temporal (bench/peers/temporal_workload.py): `temporal server start-dev` on its own SQLite
  file, the worker in the workload's process; SQLite only (the dev server has no PostgreSQL);
- Prefect 3 (bench/peers/prefect_workload.py): `prefect server start` on its own PostgreSQL
  database (SQLite without --postgres), the flows run in the workload's process;
- ours in-process and ours over HTTP (bench/engine.py --mode inprocess / --mode http).

All of that `--rounds` times, the systems' order rotated each round; every figure is the
median over rounds with its range (min-max). While a system runs, the resident memory of its process
tree (server, workers and in-process clients; for ours over HTTP the server only, not the
client process) is summed every 0.2 s: the peak is its memory. The physical limit is pgbench
on the same PostgreSQL: transactions of one single-row INSERT each, with as many clients as
our worker has database connections, once per round.

Writes the JSON of every record (--json), and into --out (docs/benchmarks for a full run,
.bench/peers-quick for --quick) a markdown fragment with the tables (peers.md) and PNG plots.
Ratios are ours ÷ peer: above 1 means ours is slower (latency), costlier (CPU, memory), or,
for runs/s only, faster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import throwaway_postgres

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS_DIR = BENCH / "peers"
VENVS = ROOT / ".bench"
OUR_PYTHON = ROOT / ".venv" / "bin" / "python"
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
PAGE = os.sysconf("SC_PAGE_SIZE")
# Our worker's connection pool (Database's default, max_overflow 0): the most transactions
# it can have in flight, so the pgbench clients.
OUR_CONNECTIONS = 10
STEPS_PER_RUN = 3


@dataclass(frozen=True)
class System:
    key: str
    label: str
    venv: str | None  # a peer's venv under .bench/, None for ours
    script: str
    count_root: bool  # whether the workload's own process is part of the system


SYSTEMS = {
    s.key: s
    for s in (
        System("dbos", "DBOS", "dbos-venv", "peers/dbos_workload.py", True),
        System("temporal", "Temporal", "temporal-venv", "peers/temporal_workload.py", True),
        System("prefect", "Prefect", "prefect-venv", "peers/prefect_workload.py", True),
        System("ours-inprocess", "ours in-process", None, "engine.py", True),
        # bench/engine.py --mode http is only the HTTP client; the server is its child.
        System("ours-http", "ours HTTP", None, "engine.py", False),
    )
}
PEERS = ("dbos", "temporal", "prefect")
OURS = ("ours-inprocess", "ours-http")
# (key, column label, how to read it from a record, whether lower is better)
METRICS: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("three_median", "3 steps, median ms", ("latency", "three", "median_ms"), True),
    ("three_p99", "3 steps, p99 ms", ("latency", "three", "p99_ms"), True),
    ("fan20_median", "fan-out 20, median ms", ("latency", "fan20", "median_ms"), True),
    ("fan20_p99", "fan-out 20, p99 ms", ("latency", "fan20", "p99_ms"), True),
    ("runs_per_s", "3-step runs/s, {clients} clients", ("throughput", "runs_per_s"), False),
    ("cpu_ms", "CPU ms per run", ("throughput", "cpu_ms_per_run"), True),
    ("peak_mb", "peak memory MB", ("peak_rss_mb",), True),
]
RATIO_METRICS = ("three_median", "fan20_median", "runs_per_s", "cpu_ms", "peak_mb")


def databases_of(key: str, databases: list[str]) -> list[str]:
    """Where each system runs: Temporal's dev server has only its own SQLite; Prefect's
    server runs on PostgreSQL when there is one (its advice for concurrent use)."""
    if key == "temporal":
        return ["sqlite"]
    if key == "prefect":
        return ["postgresql"] if "postgresql" in databases else ["sqlite"]
    return databases


# --- memory of a process tree -------------------------------------------------------------


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_bytes(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class PeakMemory(threading.Thread):
    """Samples the summed RSS of a process tree every 0.2 s; `peak` is the largest sum seen.
    The RSS sum counts pages shared between processes once per process, as `ps` would."""

    def __init__(self, root: int, count_root: bool) -> None:
        super().__init__(daemon=True)
        self.root, self.count_root = root, count_root
        self.peak = 0
        self.detail: list[tuple[str, float]] = []  # (process, MB) at the peak
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(0.2):
            pids = tree(self.root)
            if not self.count_root:
                pids = pids[1:]
            sizes = {pid: rss_bytes(pid) for pid in pids}
            if sum(sizes.values()) > self.peak:
                self.peak = sum(sizes.values())
                self.detail = [(name(pid), size / 2**20) for pid, size in sizes.items() if size]


def name(pid: int) -> str:
    """A process's program and first argument, to tell the parts of a peak apart."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [Path(a.decode(errors="replace")).name for a in argv[:3] if a]
    return " ".join(w for w in words if not w.startswith("python"))[:60]


# --- running one system ---------------------------------------------------------------------


def command_of(system: System, database: str, args: argparse.Namespace, out: Path) -> list[str]:
    common = ["--runs", str(args.runs), "--seconds", str(args.seconds),
              "--clients", str(args.clients), "--json", str(out)]  # fmt: skip
    if database == "postgresql":
        common += ["--postgres", args.postgres]
    if system.venv is not None:
        python = VENVS / system.venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"no {python}: `make bench-peers` builds the peers' venvs")
        return [str(python), str(BENCH / system.script), "--database", database, *common]
    python = OUR_PYTHON if OUR_PYTHON.exists() else Path(sys.executable)
    mode = system.key.removeprefix("ours-")
    return [str(python), str(BENCH / system.script), "--mode", mode, "--database", database,
            "--no-extras", *common]  # fmt: skip


def workload(system: System, database: str, args: argparse.Namespace, out: Path) -> Any:
    """One system on one fresh database in its own process: its JSON record, or None (and
    the reason on stderr) when it failed: one failure must not lose a 20-minute run."""
    command = command_of(system, database, args, out)
    started = time.perf_counter()
    print(f"… {system.label} on {DATABASES[database]}", end="", flush=True)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
        memory = PeakMemory(process.pid, system.count_root)
        memory.start()
        process.wait()
        memory.finished.set()
        memory.join()
        print(f": {time.perf_counter() - started:.0f} s", flush=True)
        if process.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            print(f"!! {system.label} on {DATABASES[database]} failed: {command}", flush=True)
            return None
    records = json.loads(out.read_text())
    record = next(
        r for r in (records if isinstance(records, list) else [records]) if "latency" in r
    )
    record["peak_rss_mb"] = memory.peak / 2**20
    record["peak_processes"] = memory.detail
    return record


def pgbench(postgres: str, clients: int, seconds: float) -> float | None:
    """Committed transactions/s of one single-row INSERT each, on a throwaway database."""
    binary = shutil.which("pgbench")
    if binary is None:
        print("no pgbench on PATH (Debian: postgresql-client or postgresql): no physical limit")
        return None
    with throwaway_postgres(postgres) as url, tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "insert.sql"
        script.write_text("INSERT INTO bench_insert (value) VALUES (1);\n")
        psql = shutil.which("psql")
        setup = "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, value integer NOT NULL)"
        sql = [psql, url, "-q", "-v", "ON_ERROR_STOP=1", "-c"] if psql else None
        if sql is None:
            print("no psql on PATH: no physical limit")
            return None
        subprocess.run([*sql, setup], check=True)
        try:
            done = subprocess.run(
                [binary, "-n", "-M", "prepared", "-f", str(script), "-c", str(clients),
                 "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(max(int(seconds), 1)),
                 url],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        finally:
            subprocess.run([*sql, "DROP TABLE bench_insert"], check=True)
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        sys.stderr.write(done.stdout + done.stderr)
        return None
    return float(match.group(1))


# --- figures --------------------------------------------------------------------------------


def pick(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


@dataclass
class Spread:
    median: float
    low: float
    high: float
    n: int


def spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def cell(s: Spread | None) -> str:
    if s is None:
        return "—"
    if s.n == 1:
        return number(s.median)
    return f"{number(s.median)} ({number(s.low)}-{number(s.high)})"


Summary = dict[tuple[str, str], dict[str, Spread | None]]


def summarise(records: list[dict[str, Any]]) -> Summary:
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by.setdefault((record["engine"], record["database"]), []).append(record)
    found: Summary = {}
    for key, group in by.items():
        found[key] = {}
        for metric, _, path, _ in METRICS:
            values = [v for v in (pick(r, path) for r in group) if v is not None]
            found[key][metric] = spread(values)
    return found


def median_of(found: Summary, engine: str, database: str, metric: str) -> float | None:
    s = found.get((engine, database), {}).get(metric)
    return None if s is None else s.median


def markdown(found: Summary, limits: list[float], databases: list[str], clients: int) -> str:
    lines: list[str] = []
    for database in databases:
        systems = [k for k in SYSTEMS if (k, database) in found]
        if not systems:
            continue
        lines.append(f"**{DATABASES[database]}** (median over rounds, min-max in brackets)\n")
        head = ["system"] + [label.format(clients=clients) for _, label, _, _ in METRICS]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in systems:
            cells = [cell(found[(key, database)][m]) for m, _, _, _ in METRICS]
            lines.append(f"| {SYSTEMS[key].label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "**Ours ÷ each peer** (medians; above 1: slower, costlier, or for runs/s faster)\n"
    )
    labels = {m: label.format(clients=clients) for m, label, _, _ in METRICS}
    head = ["ours", "peer", "database"] + [labels[m] for m in RATIO_METRICS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ours in OURS:
        for database in databases:
            for peer in PEERS:
                if (peer, database) not in found or (ours, database) not in found:
                    continue
                cells = []
                for metric in RATIO_METRICS:
                    a = median_of(found, ours, database, metric)
                    b = median_of(found, peer, database, metric)
                    cells.append("—" if a is None or not b else f"{a / b:.2f}x")
                lines.append(
                    f"| {SYSTEMS[ours].label.removeprefix('ours ')} | {SYSTEMS[peer].label} "
                    f"| {DATABASES[database]} | " + " | ".join(cells) + " |"
                )
    lines.append("")
    if limits:
        limit = spread(limits)
        assert limit is not None
        text = (
            f"**The physical limit** (PostgreSQL): pgbench, one single-row INSERT per "
            f"transaction, {OUR_CONNECTIONS} clients: {cell(limit)} transactions/s. Step "
            f"transitions/s are {STEPS_PER_RUN} times the 3-step runs/s (each step's end is one "
            "committed transition):"
        )
        lines.append(textwrap.fill(text, 95) + "\n")
        lines += ["| system on PostgreSQL | step transitions/s | ÷ pgbench inserts/s |",
                  "|---|---|---|"]  # fmt: skip
        for key in SYSTEMS:
            runs = found.get((key, "postgresql"), {}).get("runs_per_s")
            if runs is None:
                continue
            steps = runs.median * STEPS_PER_RUN
            lines.append(f"| {SYSTEMS[key].label} | {number(steps)} | {steps / limit.median:.1%} |")
        lines.append("")
    return "\n".join(lines)


def plots(
    found: Summary, limits: list[float], databases: list[str], out: Path, clients: int
) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        print("no matplotlib in this environment (uv sync --group bench): no plots")
        return []
    colours = {"dbos": "#7f7f7f", "temporal": "#9467bd", "prefect": "#1f77b4",
               "ours-inprocess": "#2ca02c", "ours-http": "#98df8a"}  # fmt: skip
    written = []

    def logarithmic(ax: Any) -> None:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.margins(y=0.15)

    def bars(ax: Any, metric: str, database: str, title: str, log: bool = False) -> None:
        keys = [k for k in SYSTEMS if (k, database) in found and found[(k, database)][metric]]
        values = [found[(k, database)][metric] for k in keys]
        heights = [s.median for s in values if s is not None]
        errors = [[s.median - s.low for s in values if s is not None],
                  [s.high - s.median for s in values if s is not None]]  # fmt: skip
        drawn = ax.bar(range(len(keys)), heights, yerr=errors, capsize=3,
                       color=[colours[k] for k in keys])  # fmt: skip
        ax.set_xticks(range(len(keys)), [SYSTEMS[k].label for k in keys], rotation=20,
                      fontsize=8, ha="right")  # fmt: skip
        ax.bar_label(drawn, [number(h) for h in heights], fontsize=7)
        ax.set_title(f"{title}, {DATABASES[database]}", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        if log:
            logarithmic(ax)

    def figure(name: str, panels: list[tuple[str, str, bool]]) -> None:
        fig, axes = plt.subplots(len(panels), len(databases), squeeze=False,
                                 figsize=(3.6 * len(databases), 2.9 * len(panels)))  # fmt: skip
        for row, (metric, title, log) in enumerate(panels):
            for column, database in enumerate(databases):
                bars(axes[row][column], metric, database, title, log)
        fig.suptitle("median over rounds, bars from min to max", fontsize=8)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

    figure("peers-latency.png", [("three_median", "3 steps in a row, ms (log)", True),
                                 ("fan20_median", "20-way fan-out, ms (log)", True)])  # fmt: skip
    figure("peers-throughput.png", [("runs_per_s", f"3-step runs/s, {clients} clients", False),
                                    ("cpu_ms", "CPU ms per run (log)", True)])  # fmt: skip
    figure("peers-memory.png", [("peak_mb", "peak memory, MB (RSS sum)", False)])
    if limits:
        keys = [k for k in SYSTEMS if found.get((k, "postgresql"), {}).get("runs_per_s")]
        heights = []
        for key in keys:
            runs = found[(key, "postgresql")]["runs_per_s"]
            assert runs is not None
            heights.append(runs.median * STEPS_PER_RUN)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        drawn = ax.bar(range(len(keys)), heights, color=[colours[k] for k in keys])
        ax.bar_label(drawn, [number(h) for h in heights], fontsize=7)
        limit = statistics.median(limits)
        ax.axhline(limit, color="#d62728", linestyle="--")
        ax.text(-0.4, limit, f" pgbench single-row inserts/s: {number(limit)}",
                color="#d62728", va="bottom", fontsize=8)  # fmt: skip
        ax.set_xticks(range(len(keys)), [SYSTEMS[k].label for k in keys], fontsize=8)
        logarithmic(ax)
        ax.set_title("step transitions/s on PostgreSQL (log)", fontsize=9)
        fig.tight_layout()
        path = out / "peers-limit.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return done.stdout.strip() + ("+changes" if dirty else "")


def report(result: dict[str, Any], out: Path, clients: int) -> str:
    """The markdown fragment and the plots of a run's JSON; returns the fragment."""
    settings, machine = result["settings"], result["machine"]
    found = summarise(result["records"])
    limits = result["pgbench_tps"]
    versions: dict[str, str] = {}
    for record in result["records"]:
        label = SYSTEMS[record["engine"]].label.removesuffix(" in-process")
        versions.setdefault(record["version"], label)
    notes = [
        f"Run {result['started_at'][:10]} at `{result['commit']}`: {settings['rounds']} "
        f"rounds, {settings['runs']} sequential runs per latency, {settings['seconds']:g} s "
        f"throughput phases with {clients} clients; {machine['cpus']} CPUs, load average "
        f"{machine['load_before'][0]:.2f} before and {machine['load_after'][0]:.2f} after; "
        f"{result['seconds'] / 60:.1f} minutes in all.",
        "Versions: " + "; ".join(f"{label}: {v}" for v, label in versions.items()) + ".",
    ]
    fragment = (
        "\n\n".join(textwrap.fill(n, 95) for n in notes)
        + "\n\n"
        + markdown(found, limits, settings["databases"], clients)
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.md").write_text(fragment)
    written = plots(found, limits, settings["databases"], out, clients)
    print(f"tables: {out / 'peers.md'}; plots: " + (", ".join(p.name for p in written) or "none"))
    return fragment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL server to create databases on")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30, help="sequential runs per latency")
    parser.add_argument("--seconds", type=float, default=10, help="the throughput phase")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--peers", default=",".join(PEERS), help="which peers, comma-separated")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 10 runs, 3 s phases")
    parser.add_argument(
        "--json", type=Path, help="every record (default .bench/peers.json, or "
        ".bench/peers-quick/peers.json with --quick)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="tables and plots (default docs/benchmarks, "
                        "or .bench/peers-quick with --quick)")  # fmt: skip
    parser.add_argument(
        "--from-json", type=Path, metavar="JSON",
        help="run nothing: the tables and plots of an earlier run's JSON",
    )  # fmt: skip
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        quick = result["settings"]["quick"]
        out = args.out or (VENVS / "peers-quick" if quick else ROOT / "docs" / "benchmarks")
        print(report(result, out, result["settings"]["clients"]))
        return
    if args.quick:
        args.rounds, args.runs = min(args.rounds, 2), min(args.runs, 10)
        args.seconds = min(args.seconds, 3)
    out = args.out or (VENVS / "peers-quick" if args.quick else ROOT / "docs" / "benchmarks")
    # A smoke run must not overwrite the JSON of the full run the docs were made from.
    args.json = args.json or (VENVS / "peers-quick" / "peers.json" if args.quick
                              else VENVS / "peers.json")  # fmt: skip
    peers = [p for p in args.peers.split(",") if p]
    if unknown := set(peers) - set(PEERS):
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    plan = [(k, d) for d in databases for k in (*peers, *OURS) if d in databases_of(k, databases)]

    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    print(
        f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {load_before[0]:.2f}; {args.rounds} rounds of {len(plan)} systems; "
        f"{args.runs} runs per latency, {args.seconds:g} s throughput phases with "
        f"{args.clients} clients"
    )
    records: list[dict[str, Any]] = []
    limits: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}")
            if args.postgres:
                tps = pgbench(args.postgres, OUR_CONNECTIONS, args.seconds)
                print(f"… pgbench: {number(tps)} transactions/s")
                if tps is not None:
                    limits.append(tps)
            shift = round_ % len(plan)  # no system always first, or always last
            for key, database in plan[shift:] + plan[:shift]:
                path = Path(folder) / f"{key}-{database}-{round_}.json"
                record = workload(SYSTEMS[key], database, args, path)
                if record is not None:
                    records.append({**record, "round": round_})
    load_after = os.getloadavg()
    found = summarise(records)
    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "seconds": time.perf_counter() - clock,
        "machine": {
            "python": platform.python_version(),
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "settings": {
            "rounds": args.rounds,
            "runs": args.runs,
            "seconds": args.seconds,
            "clients": args.clients,
            "quick": args.quick,
            "databases": databases,
            "peers": peers,
            "pgbench_clients": OUR_CONNECTIONS,
        },
        "pgbench_tps": limits,
        "summary": {
            f"{e} {d}": {m: None if s is None else vars(s) for m, s in v.items()}
            for (e, d), v in found.items()
        },
        "records": records,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(report(result, out, args.clients))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
