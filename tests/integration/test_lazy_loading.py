"""An idle server on the embedded default holds none of the packages it loads on first use
(docs/architecture.md, "What is loaded when"), and those parts still answer at once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import python_output
from workflow_engine.config import to_async_url
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
