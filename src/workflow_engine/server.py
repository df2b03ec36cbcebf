"""Serving the app with uvicorn, with the shutdown behaviour we promise.

On SIGTERM or SIGINT the server stops accepting connections, lets in-flight requests finish
within SHUTDOWN_TIMEOUT, stops its services (the app's lifespan), and the process exits 0.
uvicorn on its own re-raises the captured signal after a graceful stop, which turns a clean
shutdown into exit status 143 (pitfall 6 in docs/architecture.md); `GracefulServer` keeps the
signal handling and drops the re-raise.

uvicorn waits for open responses before it stops the app's services, and a live stream never
ends by itself: the signal also ends every open stream (`api/sse.py`), which would otherwise
be cut off at SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from workflow_engine.api.sse import stop_streams
from workflow_engine.config import Settings
from workflow_engine.observability import metrics
from workflow_engine.observability.metrics import MULTIPROCESS_DIR

_HANDLED = (signal.SIGTERM, signal.SIGINT)
APP_FACTORY = "workflow_engine.server:app_from_environment"
WORKER_START_SECONDS = 30


class GracefulServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in _HANDLED:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in _HANDLED:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        stop_streams()
        super().handle_exit(sig, frame)


def uvicorn_config(app: FastAPI | str, settings: Settings, *, workers: int = 1) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=workers,
        factory=isinstance(app, str),
        lifespan="on",
        log_config=None,  # logging is ours (observability.logging)
        access_log=False,
        server_header=False,
        # The client's address is ours to decide (`TRUSTED_PROXIES`, `api/client_address.py`):
        # uvicorn's own proxy handling would believe `X-Forwarded-For` from any local peer
        # before we see the request, and costs a layer on every request.
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
    )


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve `app` in this process until SIGTERM/SIGINT. Returns the exit status."""
    server = GracefulServer(uvicorn_config(app, settings))
    server.run()
    # `started` stays False when the lifespan (a required service) failed.
    return 0 if server.started else 1


def serve_workers(settings: Settings, workers: int) -> int:
    """Serve with `workers` processes sharing one socket (PostgreSQL only; see the CLI).

    Each process keeps its metrics in files of a directory they share, so that whichever one
    answers `/metrics` reports them all (set `PROMETHEUS_MULTIPROC_DIR` to choose it)."""
    if os.environ.get(MULTIPROCESS_DIR):
        metrics.clear_directory(Path(os.environ[MULTIPROCESS_DIR]))
    else:
        shared = tempfile.mkdtemp(prefix="workflow-engine-metrics-")
        os.environ[MULTIPROCESS_DIR] = shared  # inherited by the processes spawned below
        atexit.register(shutil.rmtree, shared, ignore_errors=True)
    config = uvicorn_config(APP_FACTORY, settings, workers=workers)
    # Each process imports the app before it answers the supervisor's first ping; on a busy
    # two-core machine that took longer than uvicorn's 5 s, and it restarted them in a loop.
    # (The same limit decides when a process that stopped answering pings is replaced.)
    config.timeout_worker_healthcheck = WORKER_START_SECONDS
    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    # The supervisor stops everything when a worker cannot start; say so in the exit status.
    failed = any(p.process.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return 1 if failed else 0


def app_from_environment() -> FastAPI:
    """The app factory each worker process imports: settings come from the environment
    (which the CLI prepared before forking)."""
    from workflow_engine.app import create_app
    from workflow_engine.config import load_settings
    from workflow_engine.observability.logging import configure_logging

    settings, _ = load_settings()
    configure_logging(settings.log_level, settings.effective_log_format)
    _stop_streams_on_signals()
    return create_app(settings)


def _stop_streams_on_signals() -> None:
    """In a `--workers` process uvicorn's own server handles the signals (with `signal.signal`,
    installed before it loads the app): put `stop_streams` in front of its handler."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are handled on the main thread only
    for sig in _HANDLED:
        handler = signal.getsignal(sig)
        if callable(handler):
            signal.signal(sig, _stopping_streams_first(handler))


def _stopping_streams_first(
    handler: Callable[[int, FrameType | None], object],
) -> Callable[[int, FrameType | None], None]:
    def handle(sig: int, frame: FrameType | None) -> None:
        stop_streams()
        handler(sig, frame)

    return handle
