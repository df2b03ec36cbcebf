"""The process's Prometheus metrics, and how `/metrics` renders them.

Every series has bounded labels: route templates (never raw paths), workflow and node type
names (from definitions), providers, models, MCP servers and tools (from configuration and
definitions), statuses and outcomes. Nothing is labelled with a run, user or tenant id.

With several server processes (`serve --workers N`) the CLI sets `PROMETHEUS_MULTIPROC_DIR`
before forking; every process writes its samples there and any of them renders the sum
(prometheus_client's multiprocess mode). A standalone `workflow-engine worker` serves its own
metrics on `--metrics-port`, scraped as a target of its own.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SAMPLE_FILE = re.compile(r"\w+_(\d+)\.db")  # counter_1234.db, gauge_livesum_1234.db

if os.environ.get(MULTIPROCESS_DIR):
    # The metrics below open their files there as they are created: a directory named but
    # not made yet would stop every command at import.
    Path(os.environ[MULTIPROCESS_DIR]).mkdir(parents=True, exist_ok=True)

http_requests = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
http_duration = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)
http_in_flight = Gauge(
    "http_requests_in_flight", "HTTP requests being answered.", multiprocess_mode="livesum"
)

runs_started = Counter("workflow_runs_started_total", "Runs triggered.", ["workflow"])
runs_finished = Counter(
    "workflow_runs_finished_total",
    "Runs that ended, by final status (completed, failed, cancelled).",
    ["workflow", "status"],
)
run_duration = Histogram(
    "workflow_run_duration_seconds",
    "From trigger to the end of a run.",
    ["workflow", "status"],
    buckets=RUN_BUCKETS,
)
steps = Counter(
    "workflow_step_attempts_total",
    "Step attempts by node type and outcome (completed, failed, retried, skipped, cancelled).",
    ["node", "outcome"],
)
step_duration = Histogram(
    "workflow_step_duration_seconds",
    "How long a step attempt's node ran.",
    ["node", "outcome"],
    buckets=STEP_BUCKETS,
)
schedule_to_start = Histogram(
    "workflow_step_schedule_to_start_seconds",
    "From when a step attempt could run to when a worker started it.",
    buckets=WAIT_BUCKETS,
)

events_appended = Counter(
    "events_appended_total",
    "Events appended, by aggregate type (the server's own types; `client` for the rest).",
    ["aggregate_type"],
)
sse_subscribers = Gauge(
    "sse_subscribers", "Open server-sent event streams.", multiprocess_mode="livesum"
)
stream_deltas = Counter(
    "stream_deltas_total", "Deltas (streamed text of running steps) published by this process."
)
stream_deltas_dropped = Counter(
    "stream_deltas_dropped_total",
    "Deltas a stream did not get: its client was too slow and its queue was full.",
)

rate_limit_rejected = Counter(
    "rate_limit_rejected_total", "Requests refused with a 429 by the rate limiter."
)
logins = Counter(
    "auth_logins_total",
    "Password logins by outcome: succeeded, failed (wrong or unknown credentials), throttled "
    "(refused with a 429 by the login backoff, before the password is checked).",
    ["outcome"],
)
rate_limit_fail_open = Counter(
    "rate_limit_fail_open_total", "Requests served unchecked because the limit store was away."
)

llm_requests = Counter(
    "llm_requests_total", "LLM steps' calls by outcome.", ["provider", "model", "outcome"]
)
llm_tokens = Counter(
    "llm_tokens_total", "Tokens counted by the provider (prompt, completion).",
    ["provider", "model", "kind"],
)  # fmt: skip
llm_cost = Counter(
    "llm_cost_usd_total", "Estimated cost of LLM calls from LLM_PRICES, in US dollars.",
    ["provider", "model"],
)  # fmt: skip

mcp_calls = Counter(
    "mcp_calls_total",
    "MCP tool calls by outcome (ok, or the error class).",
    ["server", "tool", "outcome"],
)
mcp_duration = Histogram(
    "mcp_call_duration_seconds", "Time an MCP tool call took.", ["server"], buckets=STEP_BUCKETS
)


@contextlib.contextmanager
def subscribing() -> Iterator[None]:
    """Counts a stream in `sse_subscribers` while it is open."""
    sse_subscribers.inc()
    try:
        yield
    finally:
        sse_subscribers.dec()


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The exposition text: this process's metrics (every process's in multiprocess mode),
    then `extra` — facts read from the database at scrape time, the same from any process."""
    if multiprocess():
        directory = Path(os.environ[MULTIPROCESS_DIR])
        directory.mkdir(parents=True, exist_ok=True)  # a cleaner may have removed it
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    facts = list(extra)
    if facts:
        scrape = CollectorRegistry()
        scrape.register(_Fixed(facts))
        text += generate_latest(scrape)
    return text


def process_exiting() -> None:
    """Drop this process's live gauges from the shared directory (multiprocess mode)."""
    if multiprocess():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def clear_directory(directory: Path) -> None:
    """Remove the samples of processes that are gone before the processes that share
    `directory` start: an earlier server's counters restart at zero with the server, as
    Prometheus expects of a restart. A process still running (a worker given the same
    directory) keeps its files."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        pid = _pid_of(stale)
        if pid is None or not _alive(pid):
            stale.unlink(missing_ok=True)


def _forget_dead_processes(directory: Path) -> None:
    """A process that was killed (out of memory, or restarted by the supervisor) never ran its
    lifespan's end: its in-flight and subscriber gauges would be summed forever."""
    for file in directory.glob("gauge_live*.db"):
        pid = _pid_of(file)
        if pid is not None and not _alive(pid):
            # Another process's scrape may be removing the same files.
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _pid_of(file: Path) -> int | None:
    found = _SAMPLE_FILE.fullmatch(file.name)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def serve_in_thread(host: str, port: int, token: str | None) -> Callable[[], None]:
    """This process's metrics on `host:port` from a daemon thread (a standalone worker has no
    HTTP server of its own), behind `Authorization: Bearer <token>` when a token is given.
    Returns the function that stops it."""
    exposition = make_wsgi_app()

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if token is not None:
            given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1")
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                from workflow_engine.api.problems import MEDIA_TYPE, problem_document

                problem = problem_document(
                    401, "metrics need Authorization: Bearer <METRICS_TOKEN>",
                    instance=environ.get("PATH_INFO", "/"),
                )  # fmt: skip
                start_response("401 Unauthorized", [
                    ("Content-Type", MEDIA_TYPE),
                    ("WWW-Authenticate", 'Bearer realm="metrics"'),
                ])  # fmt: skip
                return [json.dumps(problem).encode()]
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    server_class = _Threading6 if ":" in host else _Threading
    server = make_server(host, port, guarded, server_class, _Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Threading6(_Threading):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the log."""


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)
