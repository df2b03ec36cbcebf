"""The chaos harness: durable runs under worker kills and a database restart.

    python -m tests.chaos --postgres URL [--runs 500 --workers 3 --kill-every 2 --seed S ...]

One API server (no worker of its own) and N standalone `workflow-engine worker` processes run
on a PostgreSQL cluster the harness makes itself (`initdb` as the `postgres` user, its own
port), so that it can stop that server without touching the machine's. While runs of a
five-step fan-out workflow are triggered over HTTP (each with an idempotency key), a worker
chosen at random is SIGKILLed and started again every few seconds, until every run has ended;
halfway through the triggers the database is stopped for a few seconds while triggers and
status reads keep coming, then started again. The report says what a user would check: every
accepted trigger has its run, every run ended, no step attempt's outcome is recorded twice,
the API answered the outage with 503 problems only (never a 500, never silence), and how long
recovery took.

`--postgres` is used only where no private cluster can be made (no PostgreSQL server binaries,
or root without a `postgres` user): the kill phase then runs on a fresh database there and the
database restart is skipped, which the report says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.conftest import create_database, drop_database
from tests.e2e.conftest import Server, free_port
from workflow_engine.config.database_url import to_async_url
from workflow_engine.db import Database

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = "chaos_fanout"
STEPS = ("prepare", "left", "middle", "right", "join")
# prepare gives 1, each branch adds one (2 each), join adds one to their sum.
EXPECTED_OUTPUT = 7
TERMINAL = ("completed", "failed", "cancelled")
OUTCOME_EVENTS = ["StepCompleted", "StepFailed", "StepSkipped", "StepCancelled"]
ADMIN = {
    "BOOTSTRAP_ADMIN_EMAIL": "chaos@example.com",
    "BOOTSTRAP_ADMIN_PASSWORD": "Monkeys-Pull-Plugs-2026",
}

NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("chaos.work")
async def work(ctx: NodeContext, *, n: int, seconds: float) -> dict:
    await asyncio.sleep(seconds)
    return {"n": n + 1}
"""
FLOW = f"""
name: {WORKFLOW}
version: 1
description: Five steps, three of them in parallel between a first and a last.
input_schema:
  type: object
  properties:
    seconds: {{type: number, minimum: 0, maximum: 10}}
  required: [seconds]
steps:
  - {{id: prepare, uses: chaos.work, with: {{n: 0, seconds: "{{{{ input.seconds }}}}"}}}}
  - {{id: left, uses: chaos.work, needs: [prepare],
     with: {{n: "{{{{ steps.prepare.output.n }}}}", seconds: "{{{{ input.seconds }}}}"}}}}
  - {{id: middle, uses: chaos.work, needs: [prepare],
     with: {{n: "{{{{ steps.prepare.output.n }}}}", seconds: "{{{{ input.seconds }}}}"}}}}
  - {{id: right, uses: chaos.work, needs: [prepare],
     with: {{n: "{{{{ steps.prepare.output.n }}}}", seconds: "{{{{ input.seconds }}}}"}}}}
  - id: join
    uses: chaos.work
    needs: [left, middle, right]
    with:
      n: "{{{{ steps.left.output.n + steps.middle.output.n + steps.right.output.n }}}}"
      seconds: "{{{{ input.seconds }}}}"
output: "{{{{ steps.join.output.n }}}}"
"""


# --- the private PostgreSQL -------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else the newest Debian-style
    /usr/lib/postgresql/<version>/bin, else the PATH."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
            return Path(found)
    versions = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if versions:
        newest = max(
            versions, key=lambda p: [int(x) for x in Path(p).parts[4].split(".") if x.isdigit()]
        )
        return Path(newest).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def cluster_unavailable() -> str | None:
    """Why this machine cannot make a private PostgreSQL cluster, or None when it can."""
    if postgres_bindir() is None:
        return (
            "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: neither "
            "`pg_config --bindir` nor /usr/lib/postgresql/*/bin has them"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` OS user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root, and `runuser` (to run initdb as postgres) is missing"
    return None


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary directory, on a port of its own; initdb refuses
    root, so as root its commands run as the `postgres` user."""

    bindir: Path
    data: Path
    port: int

    @classmethod
    def create(cls) -> Cluster:
        bindir = postgres_bindir()
        assert bindir is not None
        # Not under a directory private to root: the postgres user must reach it.
        data = Path(tempfile.mkdtemp(prefix="we-chaos-pg-"))
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        cluster = cls(bindir, data, free_port())
        cluster._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return cluster

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        # fsync off: the operating system never crashes here, only the server stops, and what
        # a stopped server committed is in the page cache; the outage is the server's.
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data / "log.txt"),
            "start",
        )

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)


# --- options and report -----------------------------------------------------------------------


@dataclass
class Options:
    runs: int = 500
    workers: int = 3
    kill_every: float = 2.0
    seed: int = 20261206
    rate: float = 6.0  # triggers started per second
    clients: int = 6  # triggers in flight at once, at most
    readers: int = 2  # status readers polling accepted runs
    step_seconds: tuple[float, float] = (0.1, 0.5)
    lease_seconds: float = 5.0
    outage: bool = True
    outage_at: float = 0.5  # the database stops once this share of the runs was accepted
    outage_seconds: float = 5.0
    stop_mode: str = "immediate"
    client_timeout: float = 10.0
    drain_timeout: float = 300.0  # after the last trigger: runs not ended by then are stuck
    postgres: str | None = None  # fallback when no private cluster can be made
    bin_dir: Path = ROOT / ".venv" / "bin"
    work: Path | None = None  # where logs go (a temporary directory, removed, when None)


@dataclass
class Answer:
    endpoint: str  # "trigger" or "status"
    sent: float  # monotonic
    received: float
    status: int | None  # None: no answer within the client timeout (or the connection failed)
    problem: bool = False  # application/problem+json
    retry_after: bool = False
    error: str = ""
    run_id: str = ""  # of an accepted trigger

    @property
    def label(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        kind = " problem+json" if self.problem else ""
        return f"{self.status}{kind}{' Retry-After' if self.retry_after else ''}"

    @property
    def clean_outage_answer(self) -> bool:
        return self.status == 503 and self.problem and self.retry_after


@dataclass
class Report:
    seed: int
    runs_requested: int
    workers: int
    kill_every: float
    lease_seconds: float
    database: str  # "private cluster" or the fallback
    runs_accepted: int = 0
    trigger_requests: int = 0
    runs_in_database: int = 0
    runs_completed: int = 0
    runs_failed: int = 0
    runs_stuck: int = 0
    accepted_lost: int = 0
    runs_unaccounted: int = 0  # runs of the workflow no accepted trigger returned
    wrong_outputs: int = 0  # completed runs whose output is not the fan-in's sum
    step_outcomes_duplicated: int = 0  # outcome events beyond one per (run, step, attempt)
    step_completions_duplicated: int = 0  # StepCompleted beyond one per (run, step)
    step_attempts_started: int = 0
    most_starts_of_one_step: int = 0
    tasks_left: int = 0
    kills: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)  # every answer, by label
    server_errors: int = 0  # 5xx other than 503
    unanswered: int = 0
    unhandled_errors_logged: int = 0
    worker_errors_logged: int = 0  # error lines in the workers' logs (not a failure by itself)
    outage_skipped: str = ""  # why there was no database restart
    outage_seconds: float = 0.0
    outage_answers: dict[str, int] = field(default_factory=dict)
    outage_bad_answers: int = 0
    recovery_first_trigger_seconds: float | None = None
    recovery_backlog_seconds: float | None = None
    failed_errors: list[str] = field(default_factory=list)
    stuck_runs: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    logs: str = ""

    def failures(self) -> list[str]:
        """What broke a promise of the engine, in words; empty when the run was clean."""
        found = []
        checks = [
            (
                self.runs_accepted == self.runs_requested,
                f"{self.runs_requested - self.runs_accepted} triggers never accepted",
            ),
            (self.accepted_lost == 0, f"{self.accepted_lost} accepted triggers have no run"),
            (self.runs_unaccounted == 0, f"{self.runs_unaccounted} runs no trigger accepted"),
            (self.runs_stuck == 0, f"{self.runs_stuck} runs stuck: {self.stuck_runs[:5]}"),
            (self.runs_failed == 0, f"{self.runs_failed} runs failed: {self.failed_errors[:3]}"),
            (
                self.runs_completed == self.runs_accepted,
                f"{self.runs_completed} of {self.runs_accepted} runs completed",
            ),
            (self.wrong_outputs == 0, f"{self.wrong_outputs} runs with a wrong output"),
            (
                self.step_outcomes_duplicated == 0,
                f"{self.step_outcomes_duplicated} step outcomes recorded twice",
            ),
            (
                self.step_completions_duplicated == 0,
                f"{self.step_completions_duplicated} steps completed twice",
            ),
            (self.tasks_left == 0, f"{self.tasks_left} tasks left in the queue"),
            (not self.unexpected_exits, f"processes exited on their own: {self.unexpected_exits}"),
            (self.server_errors == 0, f"{self.server_errors} answers were 5xx other than 503"),
            (self.unanswered == 0, f"{self.unanswered} requests got no answer in time"),
            (
                self.unhandled_errors_logged == 0,
                f"{self.unhandled_errors_logged} unhandled errors in the server's log",
            ),
            (
                self.outage_bad_answers == 0,
                f"{self.outage_bad_answers} answers during the outage were not 503 problems "
                f"with Retry-After: {self.outage_answers}",
            ),
        ]
        found = [message for ok, message in checks if not ok]
        if not self.outage_skipped and not self.outage_answers:
            found.append("no request was answered during the outage")
        return found

    def render(self) -> str:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        outage = (
            f"skipped: {self.outage_skipped}"
            if self.outage_skipped
            else f"{self.outage_seconds:.1f} s down; answers {dict(self.outage_answers)}"
        )
        lines = [
            f"chaos run: seed {self.seed}, {self.runs_requested} runs, {self.workers} workers, "
            f"a worker SIGKILLed every {self.kill_every:g} s (lease {self.lease_seconds:g} s), "
            f"on {self.database}; {self.elapsed_seconds:.0f} s",
            f"  runs accepted                  {self.runs_accepted} "
            f"({self.trigger_requests} trigger requests)",
            f"  runs in the database           {self.runs_in_database}",
            f"  runs completed                 {self.runs_completed}",
            f"  runs failed                    {self.runs_failed}",
            f"  runs stuck                     {self.runs_stuck}",
            f"  accepted triggers lost         {self.accepted_lost}",
            f"  runs without accepted trigger  {self.runs_unaccounted}",
            f"  wrong outputs                  {self.wrong_outputs}",
            f"  step outcomes recorded twice   {self.step_outcomes_duplicated}",
            f"  steps completed twice          {self.step_completions_duplicated}",
            f"  step attempts started          {self.step_attempts_started} "
            f"(for {self.runs_completed * len(STEPS)} steps; one step at most "
            f"{self.most_starts_of_one_step} times)",
            f"  tasks left                     {self.tasks_left}",
            f"  workers killed                 {self.kills}",
            f"  processes exited on their own  {len(self.unexpected_exits)}",
            f"  answers                        {dict(self.answers)}",
            f"  5xx other than 503 / no answer {self.server_errors} / {self.unanswered}",
            f"  unhandled errors logged        {self.unhandled_errors_logged} (server), "
            f"{self.worker_errors_logged} error lines (workers)",
            f"  database restart               {outage}",
            f"  recovery: first trigger        {seconds(self.recovery_first_trigger_seconds)}",
            f"  recovery: backlog done         {seconds(self.recovery_backlog_seconds)}",
        ]
        problems = self.failures()
        lines.append(
            "result: " + ("clean" if not problems else "FAILED\n  - " + "\n  - ".join(problems))
        )
        if self.logs:
            lines.append(f"logs: {self.logs}")
        return "\n".join(lines)


# What the report reads from the database once every process has stopped.
_RUNS = text(
    "SELECT id::text AS id, status, output, error FROM workflow_runs WHERE workflow_name = :name"
)
# An attempt's outcome is one event; a second one for the same (run, step, attempt) is a
# worker whose lease was taken over recording what its successor records too.
_OUTCOMES_REPEATED = text(
    "SELECT count(*) - count(DISTINCT (aggregate_id, data->>'step_id', data->>'attempt')) "
    "FROM events WHERE aggregate_type = 'runs' AND event_type = ANY(:types)"
)
_COMPLETIONS_REPEATED = text(
    "SELECT count(*) - count(DISTINCT (aggregate_id, data->>'step_id')) "
    "FROM events WHERE aggregate_type = 'runs' AND event_type = 'StepCompleted'"
)
# Attempts started in all, and the most any one step was started (each kill adds some).
_STARTS = text(
    "SELECT coalesce(sum(n), 0), coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM events "
    "WHERE aggregate_type = 'runs' AND event_type = 'StepStarted' "
    "GROUP BY aggregate_id, data->>'step_id') AS per_step"
)


# --- the run ----------------------------------------------------------------------------------


class Chaos:
    def __init__(self, options: Options, work: Path, url: str, cluster: Cluster | None) -> None:
        self.o = options
        self.work = work
        self.url = url
        self.cluster = cluster
        self.kill_chance = random.Random(options.seed)
        self.load_chance = random.Random(options.seed + 1)
        self.answers: list[Answer] = []
        self.accepted: dict[int, str] = {}  # trigger index -> run id
        self.first_sent: dict[int, float] = {}
        self.triggers_done = asyncio.Event()
        self.outage_due = asyncio.Event()  # set once `outage_at` of the runs were accepted
        self.outage_planned = cluster is not None and options.outage
        self.db_down = asyncio.Event()
        self.outage_over = asyncio.Event()
        if not self.outage_planned:
            self.db_down.set()
            self.outage_over.set()
        self.all_ended = asyncio.Event()
        self.outage_on = False  # kills wait while the database is being stopped or is down
        self.down_at: float | None = None  # pg_ctl stop returned
        self.restart_at: float | None = None  # pg_ctl start issued
        self.up_at: float | None = None  # pg_ctl start returned
        self.backlog_done_at: float | None = None
        self.kills = 0
        self.unexpected_exits: list[str] = []
        self.workers: list[Server] = []
        self.started_workers: list[Server] = []  # the killed ones too: their logs count
        self.api: Server | None = None
        modules, flows = work / "modules", work / "flows"
        modules.mkdir(parents=True, exist_ok=True)
        flows.mkdir(parents=True, exist_ok=True)
        (modules / "chaos_nodes.py").write_text(NODES)
        (flows / f"{WORKFLOW}.yaml").write_text(FLOW)
        unlimited = "100000000"
        self.env = {
            "DATABASE_URL": url,
            "PYTHONPATH": str(modules),
            "NODE_MODULES": "chaos_nodes",
            "WORKFLOWS_DIR": str(flows),
            "WORKER_LEASE_SECONDS": f"{options.lease_seconds:g}",
            "DATA_DIR": str(work / "data"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "warning",
            "JWT_EXPIRATION": "86400",
            "TRACING_ENABLED": "false",
            "RATE_LIMIT_PER_MINUTE": unlimited,
            "RATE_LIMIT_BURST": unlimited,
            "RATE_LIMIT_TENANT_PER_MINUTE": unlimited,
            "RATE_LIMIT_TENANT_BURST": unlimited,
            **ADMIN,
        }

    def _process(self, *args: str, env: dict[str, str] | None = None) -> Server:
        command = [str(self.o.bin_dir / "workflow-engine"), *args]
        return Server(command, cwd=self.work, env={**self.env, **(env or {})})

    def _worker(self) -> Server:
        worker = self._process("worker")
        # Its metrics port answers once it has started: how the harness knows it is ready.
        worker.env["WORKER_METRICS_PORT"] = str(worker.port)
        self.started_workers.append(worker)
        return worker.start(wait=False)

    async def _workers_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as client:
            for worker in self.workers:
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{worker.url}/metrics")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)

    async def run(self) -> Report:
        began = time.monotonic()
        try:
            report = await self._run()
        finally:
            self._stop_processes()
        report.unexpected_exits = self.unexpected_exits
        assert self.api is not None
        report.unhandled_errors_logged = self.api.output().count("unhandled error")
        report.worker_errors_logged = sum(
            worker.output().count('"level": "error"') for worker in self.started_workers
        )
        report.elapsed_seconds = time.monotonic() - began
        return report

    async def _run(self) -> Report:
        self.api = self._process("serve", env={"WORKER_ENABLED": "false"})
        # The server migrates the database; workers started after it find it ready.
        await asyncio.to_thread(self.api.start)
        for _ in range(self.o.workers):
            self.workers.append(self._worker())
        limits = httpx.Limits(max_connections=self.o.clients + self.o.readers + 4)
        async with httpx.AsyncClient(
            base_url=self.api.url, timeout=self.o.client_timeout, limits=limits
        ) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={
                    "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"],
                    "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
                },
            )
            login.raise_for_status()
            client.headers["Authorization"] = f"Bearer {login.json()['token']}"
            db = Database(to_async_url(self.url))
            try:
                await self._under_chaos(client, db)
                return await self._report(db)
            finally:
                await db.dispose()

    async def _under_chaos(self, client: httpx.AsyncClient, db: Database) -> None:
        load_started = time.monotonic()
        triggers = asyncio.create_task(self._trigger_all(client, load_started))
        readers = [asyncio.create_task(self._read_statuses(client)) for _ in range(self.o.readers)]
        killer = asyncio.create_task(self._kill_workers())
        outage = asyncio.create_task(self._outage(db)) if self.outage_planned else None
        watcher = asyncio.create_task(self._watch_runs(db))
        try:
            await triggers
            self.triggers_done.set()
            if outage is not None:
                await outage
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_ended.wait(), self.o.drain_timeout)
        finally:
            self.triggers_done.set()
            for task in (*readers, killer, watcher, *([outage] if outage else [])):
                task.cancel()
            await asyncio.gather(
                *readers, killer, watcher, *([outage] if outage else []), return_exceptions=True
            )

    async def _request(
        self, client: httpx.AsyncClient, endpoint: str, method: str, path: str, **kwargs: object
    ) -> Answer:
        sent = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            answer = Answer(endpoint, sent, time.monotonic(), None, error=type(exc).__name__)
        else:
            answer = Answer(
                endpoint,
                sent,
                time.monotonic(),
                response.status_code,
                problem=response.headers.get("content-type") == "application/problem+json",
                retry_after=response.headers.get("retry-after", "").isdigit(),
            )
            if response.status_code in (200, 202) and endpoint == "trigger":
                answer.run_id = response.json()["workflow_id"]
        self.answers.append(answer)
        return answer

    async def _trigger_all(self, client: httpx.AsyncClient, started: float) -> None:
        pending: asyncio.Queue[int] = asyncio.Queue()
        for index in range(self.o.runs):
            pending.put_nowait(index)
        low, high = self.o.step_seconds
        durations = [round(self.load_chance.uniform(low, high), 3) for _ in range(self.o.runs)]
        # The triggers after the first `outage_at` of them (and a tenth more) wait for the
        # database to stop, so that the outage meets triggers however long it waited to start.
        hold_from = int(self.o.runs * min(1.0, self.o.outage_at + 0.1))
        unheld_done = 0

        async def trigger(index: int) -> None:
            nonlocal unheld_done
            await attempt(index)
            if index < hold_from:
                unheld_done += 1
                if unheld_done == hold_from:  # even if some were never accepted: no deadlock
                    self.outage_due.set()

        async def attempt(index: int) -> None:
            await asyncio.sleep(max(0.0, started + index / self.o.rate - time.monotonic()))
            if index >= hold_from:
                await self.db_down.wait()
            body = {"workflow_name": WORKFLOW, "data": {"seconds": durations[index]}}
            key = f"chaos-{self.o.seed}-{index}"
            self.first_sent[index] = time.monotonic()
            # A client that got no 2xx sends the same request again under the same key, as
            # the API tells it to; the key makes a retry of a trigger that did start a run
            # return that run. Give up after five minutes of refusals.
            give_up = time.monotonic() + 300
            while time.monotonic() < give_up:
                answer = await self._request(
                    client,
                    "trigger",
                    "POST",
                    "/api/v1/workflows/trigger",
                    json=body,
                    headers={"Idempotency-Key": key},
                )
                if answer.status in (200, 202):
                    self.accepted[index] = answer.run_id
                    if len(self.accepted) >= self.o.runs * self.o.outage_at:
                        self.outage_due.set()
                    return
                await asyncio.sleep(0.5)

        async def client_loop() -> None:
            while not pending.empty():
                await trigger(pending.get_nowait())

        await asyncio.gather(*(client_loop() for _ in range(self.o.clients)))

    async def _read_statuses(self, client: httpx.AsyncClient) -> None:
        while not (self.triggers_done.is_set() and self.outage_over.is_set()):
            if self.accepted:
                run_id = self.load_chance.choice(list(self.accepted.values()))
                await self._request(client, "status", "GET", f"/api/v1/workflows/{run_id}/status")
            await asyncio.sleep(0.05)

    async def _kill_workers(self) -> None:
        while True:
            await asyncio.sleep(self.o.kill_every)
            if self.outage_on or self.all_ended.is_set():
                continue
            self._restart_exited()
            slot = self.kill_chance.randrange(len(self.workers))
            victim = self.workers[slot]
            assert victim.process is not None
            victim.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.process.wait, 10)
            self.kills += 1
            self.workers[slot] = self._worker()

    def _restart_exited(self) -> None:
        assert self.api is not None
        assert self.api.process is not None
        code = self.api.process.poll()
        exited = f"the API server exited with {code} ({self.api.log_file})"
        if code is not None and exited not in self.unexpected_exits:
            self.unexpected_exits.append(exited)
        for slot, worker in enumerate(self.workers):
            assert worker.process is not None
            if worker.process.poll() is not None:
                self.unexpected_exits.append(
                    f"worker exited with {worker.process.returncode} ({worker.log_file})"
                )
                self.workers[slot] = self._worker()

    async def _outage(self, db: Database) -> None:
        assert self.cluster is not None
        try:
            await self._stop_and_start(db)
        finally:  # held triggers and readers go on even if pg_ctl failed
            self.db_down.set()
            self.outage_over.set()
            self.outage_on = False

    async def _stop_and_start(self, db: Database) -> None:
        assert self.cluster is not None
        await self.outage_due.wait()
        self.outage_on = True
        # A worker fails fast when the database is away as it starts (`workflow-engine` exits
        # 1 so that its supervisor starts it again): the outage is for running processes, so
        # the kills pause and the replacements finish starting first.
        await self._workers_ready()
        await db.dispose()  # the harness's own connections would only break
        await asyncio.to_thread(self.cluster.stop, self.o.stop_mode)
        self.down_at = time.monotonic()
        self.db_down.set()
        await asyncio.sleep(self.o.outage_seconds)
        self.restart_at = time.monotonic()
        await asyncio.to_thread(self.cluster.start)
        self.up_at = time.monotonic()
        self.outage_on = False
        self._restart_exited()

    async def _watch_runs(self, db: Database) -> None:
        """Notes when the backlog left by the outage is done, and when every run has ended."""
        while True:
            await asyncio.sleep(0.5)
            if self.outage_on:
                continue
            try:
                ended = await self._ended(db, list(self.accepted.values()))
            except Exception:  # the database may still be coming back
                continue
            up = self.up_at
            if up is not None and self.backlog_done_at is None:
                backlog = [i for i, sent in self.first_sent.items() if sent < up]
                if all(i in self.accepted and self.accepted[i] in ended for i in backlog):
                    self.backlog_done_at = time.monotonic()
            if self.triggers_done.is_set() and len(ended) == len(self.accepted):
                self.all_ended.set()
                return

    @staticmethod
    async def _ended(db: Database, run_ids: list[str]) -> set[str]:
        async with db.read() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id::text FROM workflow_runs WHERE workflow_name = :name "
                    "AND status IN ('completed', 'failed', 'cancelled')"
                ),
                {"name": WORKFLOW},
            )
            return {row[0] for row in rows} & set(run_ids)

    async def _report(self, db: Database) -> Report:
        o = self.o
        report = Report(
            o.seed,
            o.runs,
            o.workers,
            o.kill_every,
            o.lease_seconds,
            "a private PostgreSQL cluster" if self.cluster else f"{self.url} (no private cluster)",
        )
        report.runs_accepted = len(self.accepted)
        report.trigger_requests = sum(1 for a in self.answers if a.endpoint == "trigger")
        report.kills = self.kills
        report.answers = dict(Counter(a.label for a in self.answers))
        report.server_errors = sum(
            1 for a in self.answers if a.status is not None and a.status >= 500 and a.status != 503
        )
        report.unanswered = sum(1 for a in self.answers if a.status is None)
        if not self.cluster:
            report.outage_skipped = "no private PostgreSQL cluster could be made"
        elif not o.outage:
            report.outage_skipped = "--no-outage"
        elif self.down_at and self.restart_at and self.up_at:
            report.outage_seconds = self.up_at - self.down_at
            during = [a for a in self.answers if self.down_at <= a.sent < self.restart_at]
            report.outage_answers = dict(Counter(a.label for a in during))
            report.outage_bad_answers = sum(1 for a in during if not a.clean_outage_answer)
            firsts = [
                a.received
                for a in self.answers
                if a.endpoint == "trigger" and a.sent >= self.up_at and a.status in (200, 202)
            ]
            if firsts:
                report.recovery_first_trigger_seconds = min(firsts) - self.up_at
            if self.backlog_done_at is not None:
                report.recovery_backlog_seconds = self.backlog_done_at - self.up_at
        accepted = set(self.accepted.values())
        async with db.read() as conn:
            runs = (await conn.execute(_RUNS, {"name": WORKFLOW})).all()
            outcomes = (
                await conn.execute(_OUTCOMES_REPEATED, {"types": OUTCOME_EVENTS})
            ).scalar_one()
            completions = (await conn.execute(_COMPLETIONS_REPEATED)).scalar_one()
            starts = (await conn.execute(_STARTS)).one()
            tasks = (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one()
        in_database = {row.id: row for row in runs}
        report.runs_in_database = len(in_database)
        report.accepted_lost = len(accepted - in_database.keys())
        report.runs_unaccounted = len(in_database.keys() - accepted)
        report.runs_completed = sum(1 for r in runs if r.status == "completed")
        report.runs_failed = sum(1 for r in runs if r.status in ("failed", "cancelled"))
        report.failed_errors = [str(r.error) for r in runs if r.status == "failed"][:10]
        report.stuck_runs = sorted(r.id for r in runs if r.status not in TERMINAL)
        report.runs_stuck = len(report.stuck_runs)
        report.wrong_outputs = sum(
            1 for r in runs if r.status == "completed" and r.output != EXPECTED_OUTPUT
        )
        report.step_outcomes_duplicated = int(outcomes)
        report.step_completions_duplicated = int(completions)
        report.step_attempts_started = int(starts[0])
        report.most_starts_of_one_step = int(starts[1])
        report.tasks_left = int(tasks)
        return report

    def _stop_processes(self) -> None:
        for process in [*self.workers, *([self.api] if self.api else [])]:
            if process.process is not None and process.process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.stop()


async def run_chaos(options: Options) -> Report:
    """Runs the chaos suite as `options` say; the report says what held and what broke."""
    work = options.work or Path(tempfile.mkdtemp(prefix="we-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    cluster: Cluster | None = None
    fresh: str | None = None
    if cluster_unavailable() is None:
        cluster = await asyncio.to_thread(Cluster.create)
        await asyncio.to_thread(cluster.start)
        url = cluster.url
    elif options.postgres:
        url = fresh = await create_database(options.postgres)
    else:
        raise RuntimeError(f"no PostgreSQL to run on: {cluster_unavailable()}, and no --postgres")
    try:
        report = await Chaos(options, work, url, cluster).run()
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.remove)
        if fresh is not None:
            await drop_database(fresh)
    if report.failures() or options.work is not None:
        report.logs = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Options()
    parser.add_argument(
        "--postgres",
        help="PostgreSQL to use only if no private cluster can "
        "be made (the database restart is then skipped)",
    )
    parser.add_argument("--runs", type=int, default=d.runs)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--kill-every", type=float, default=d.kill_every, help="seconds")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--rate", type=float, default=d.rate, help="triggers started a second")
    parser.add_argument("--clients", type=int, default=d.clients)
    parser.add_argument("--lease-seconds", type=float, default=d.lease_seconds)
    parser.add_argument("--outage-seconds", type=float, default=d.outage_seconds)
    parser.add_argument("--stop-mode", choices=["fast", "immediate"], default=d.stop_mode)
    parser.add_argument("--no-outage", action="store_true", help="skip the database restart")
    parser.add_argument("--drain-timeout", type=float, default=d.drain_timeout)
    parser.add_argument("--bin", type=Path, default=d.bin_dir, help="where workflow-engine is")
    parser.add_argument("--work", type=Path, help="keep logs here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    options = Options(
        runs=args.runs,
        workers=args.workers,
        kill_every=args.kill_every,
        seed=args.seed,
        rate=args.rate,
        clients=args.clients,
        lease_seconds=args.lease_seconds,
        outage=not args.no_outage,
        outage_seconds=args.outage_seconds,
        stop_mode=args.stop_mode,
        drain_timeout=args.drain_timeout,
        postgres=args.postgres,
        bin_dir=args.bin,
        work=args.work,
    )
    if not (options.bin_dir / "workflow-engine").exists():
        print(
            f"{options.bin_dir / 'workflow-engine'} is missing: run `make install`", file=sys.stderr
        )
        return 2
    reason = cluster_unavailable()
    if reason:
        print(f"warning: {reason}", file=sys.stderr)
    report = asyncio.run(run_chaos(options))
    print(report.render())
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
