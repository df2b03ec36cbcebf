"""`GET /api/v1/workflows/{id}/logs?follow=true`: entries arrive live, the stream ends with the
run, and a reconnect with `Last-Event-ID` gets exactly the rest."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

NODES = """
import asyncio

from workflow_engine.nodes import NodeContext, node


@node("e2e.drip")
async def drip(ctx: NodeContext, *, lines: int) -> dict:
    for n in range(lines):
        ctx.log.info(f"drop {n}")
        await asyncio.sleep(0.3)
    return {"drops": lines}
"""
FLOW = "name: drip\nsteps:\n  - id: drip\n    uses: e2e.drip\n    with: {lines: 6}\n"
ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Follow-The-Logs-2026"}  # fmt: skip


def _read_stream(url: str, headers: dict[str, str]) -> list[tuple[str, str, dict]]:
    """Every (id, event, data) until the server ends the stream."""
    messages, current = [], {}
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    messages.append(
                        (current.get("id", ""), current["event"], json.loads(current["data"]))
                    )
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return messages


def test_following_a_runs_log_live_and_resuming(
    server_factory: type[Server], tmp_path: Path
) -> None:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "e2e_nodes.py").write_text(NODES)
    (flows / "drip.yaml").write_text(FLOW)
    server = server_factory(env={"PYTHONPATH": str(modules), "NODE_MODULES": "e2e_nodes",
                                 "WORKFLOWS_DIR": str(flows), **ADMIN}).start()  # fmt: skip
    token = httpx.post(f"{server.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    run = httpx.post(f"{server.url}/api/v1/workflows/trigger", headers=headers, timeout=10,
                     json={"workflow_name": "drip"}).json()  # fmt: skip
    logs = f"{server.url}{run['links']['logs']}?follow=true"

    streamed = _read_stream(logs, headers)  # returns once the run has ended

    assert streamed[-1][1:] == ("end", {"status": "completed"})  # the stream says it ended
    messages = [data["message"] for _, _, data in streamed[:-1]]
    assert messages == [
        "run of drip version 1 queued", "step drip started (attempt 1)",
        *[f"drop {n}" for n in range(6)], "step drip completed", "run completed",
    ]  # fmt: skip
    assert [event for _, event, _ in streamed[:-1]] == ["info"] * (len(streamed) - 1)
    resumed = _read_stream(logs, {**headers, "Last-Event-ID": streamed[3][0]})
    assert resumed == streamed[4:]
