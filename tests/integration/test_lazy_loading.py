"""An idle server on the embedded default holds none of the packages it loads on first use
(docs/architecture.md, "What is loaded when"), and those parts still answer at once; a
standalone worker does not even load the server's, nor what authenticates requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import python_output
from workflow_engine.config import Settings, to_async_url
from workflow_engine.db.migrate import upgrade

# Loaded by the first MCP session or demo request, a migration, a URL parsed or a request
# sent, a statement for PostgreSQL, a new password checked: nothing an idle default server does.
LAZY = ("alembic", "httpx", "httpx2", "mcp", "mcp_types", "sqlalchemy.dialects.postgresql",
        "zxcvbn")  # fmt: skip

SCRIPT = """
import asyncio, json, sys

from workflow_engine.app import create_app
from workflow_engine.config import load_settings

async def main():
    settings, _ = load_settings({
        "DATABASE_URL": DATABASE_URL, "DATA_DIR": DATA_DIR, "JWT_SECRET": "s" * 40,
        "LOG_LEVEL": "warning",
    })
    app = create_app(settings)  # as `serve` builds it: demo services, embedded worker
    async with app.router.lifespan_context(app):
        await asyncio.sleep(1.5)  # the worker, the registry checker and the tail tick
        idle = [name for name in LAZY if name in sys.modules]
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.post(
                "/demo/mcp/notion/",
                headers={"Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "test", "version": "0"}}},
            )
    print(json.dumps({"idle": idle, "status": answer.status_code, "body": answer.text}))

asyncio.run(main())
"""


def test_an_idle_server_loads_none_of_the_lazy_parts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade(to_async_url(url))  # here: the server under test must not run Alembic
    script = f"DATABASE_URL = {url!r}\nDATA_DIR = {str(tmp_path)!r}\nLAZY = {LAZY!r}\n" + SCRIPT
    seen = json.loads(python_output(script).splitlines()[-1])
    assert seen["idle"] == []
    # The demo MCP server, built by this first request, answers it.
    assert seen["status"] == 200, seen["body"]
    assert '"serverInfo":{"name":"notion-demo"' in seen["body"].replace(" ", "")


# None of them runs a step: the API (FastAPI, Starlette, uvicorn), authentication (JWT and the
# cryptography under it, argon2, zxcvbn), Alembic (a migration runs in a forked child), and
# what is loaded on first use. Worth about a third of a second of each start.
NOT_IN_A_WORKER = (*LAZY, "argon2", "cryptography", "fastapi", "jwt", "opentelemetry.trace",
                   "starlette", "uvicorn", "workflow_engine.api", "workflow_engine.app",
                   "workflow_engine.auth.service")  # fmt: skip

WORKER = """
import atexit, gc, json, sys

def report():
    loaded = [name for name in NOT_IN_A_WORKER if name in sys.modules]
    print(json.dumps({"loaded": loaded, "collecting": gc.isenabled()}), flush=True)

atexit.register(report)  # after the worker stopped: what it loaded to start and to work
sys.argv = ["workflow-engine", "worker"]
from workflow_engine.cli import main

main()
"""


def run_worker(env: dict[str, str]) -> tuple[int, str]:
    """`workflow-engine worker` from this source tree with `env` (and none of the caller's
    settings), stopped with SIGTERM as soon as it logs that it started; its exit status and
    output, which ends with what it had loaded."""
    ours = {name.upper() for name in Settings.model_fields}
    base = {name: value for name, value in os.environ.items() if name.upper() not in ours}
    script = f"NOT_IN_A_WORKER = {NOT_IN_A_WORKER!r}\n" + WORKER
    process = subprocess.Popen(
        [sys.executable, "-c", script], env={**base, **env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    watchdog = threading.Timer(60, process.kill)  # a worker that never starts fails the test
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "worker started" in line:
                process.send_signal(signal.SIGTERM)
        status = process.wait()
    finally:
        watchdog.cancel()
    return status, "".join(lines)


@pytest.mark.parametrize("schema", ["current", "empty"])
def test_a_standalone_worker_loads_neither_the_api_nor_authentication(
    tmp_path: Path, schema: str
) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    if schema == "current":
        upgrade(to_async_url(url))
    # An empty database is migrated first, in a child process: none of it stays here.
    env = {"DATABASE_URL": url, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "info",
           "LOG_FORMAT": "json"}  # fmt: skip
    status, output = run_worker(env)
    assert status == 0, output
    assert '"worker started"' in output
    seen = json.loads(output.splitlines()[-1])
    assert seen["loaded"] == []
    # Paused while it started; a worker that ran on without collections would grow for ever.
    assert seen["collecting"] is True
