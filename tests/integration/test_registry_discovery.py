"""A workflow finds its MCP server through the registry: two instances of the demo Notion
server on local ports, round-robin between them, failover when one goes away, and a clear
error when none is healthy."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.permissions import Role
from workflow_engine.demo.services import PORTS, serve_standalone

SEARCH = {
    "name": "search_kb",
    "steps": [
        {
            "id": "search",
            "uses": "mcp.call",
            "retry": {"max_attempts": 2, "initial_delay": 0.05, "jitter": 0},
            "with": {"server": "kb", "tool": "search_pages", "arguments": {"query": "refund"}},
        }
    ],
    "output": {
        "instance": "{{ steps.search.output.instance }}",
        "found": "{{ steps.search.output.data.results | length }}",
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoInstance:
    task: asyncio.Task[None]
    notion_url: str

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def _start_demo(data_dir: Path) -> DemoInstance:
    ports = {name: _free_port() for name in PORTS}
    task = asyncio.create_task(serve_standalone(data_dir, "127.0.0.1", ports))
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", ports["notion"])
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return DemoInstance(task, f"http://127.0.0.1:{ports['notion']}")
    raise AssertionError("the demo servers did not start")


@pytest.fixture
async def instances(tmp_path: Path) -> AsyncIterator[list[DemoInstance]]:
    started = [await _start_demo(tmp_path / f"demo-{n}") for n in range(2)]
    yield started
    for instance in started:
        if not instance.task.done():
            await instance.stop()


async def test_a_workflow_finds_its_mcp_server_in_the_registry_and_fails_over(
    database_url: str, tmp_path: Path, instances: list[DemoInstance]
) -> None:
    # Checks far apart: what routes around the stopped instance is the failover, not the
    # checker noticing.
    app = build_app(database_url, tmp_path, workflows=[SEARCH], DEMO_SERVICES="false",
                    REGISTRY_CHECK_INTERVAL_SECONDS="60")  # fmt: skip
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        service = {"Authorization": f"Bearer {await accounts.token(Role.service, tenant)}"}
        operator = {"Authorization": f"Bearer {await accounts.token(Role.operator, tenant)}"}
        ids = []
        for instance in instances:
            registered = await client.post("/api/v1/registry/register", headers=service, json={
                "service_name": "kb", "service_url": instance.notion_url,
                "health_check_url": f"{instance.notion_url}/health",
                "metadata": {"protocol": "mcp"},
            })  # fmt: skip
            assert registered.status_code == 201, registered.text
            assert registered.json()["status"] == "healthy"
            ids.append(registered.json()["id"])

        async def search() -> tuple[dict[str, Any], dict[str, Any], Any]:
            run = await trigger_run(client, operator, "search_kb")
            status = await finished_run(client, operator, run["workflow_id"], timeout=60)
            results = (await client.get(run["links"]["results"], headers=operator)).json()
            return status, steps_of(status)["search"], results["output"]

        served = []
        for _ in range(2):
            status, step, output = await search()
            assert status["status"] == "completed", status
            assert output["found"] > 0
            served.append(output["instance"])
        assert sorted(served) == sorted(ids)  # round-robin: each instance served once

        await instances[0].stop()
        for _ in range(2):  # whichever instance's turn it is, the live one answers
            status, step, output = await search()
            assert status["status"] == "completed", status
            assert output["instance"] == ids[1]
            assert step["attempts"] == 1, step  # failed over within the attempt, not by a retry

        for service_id in ids:
            gone = await client.delete(f"/api/v1/registry/deregister/{service_id}",
                                       headers=service)  # fmt: skip
            assert gone.status_code == 204
        status, step, _ = await search()
        assert status["status"] == "failed"
        assert step["error"]["class"] == "mcp_no_healthy_instance"
        assert "no healthy instance of it" in step["error"]["message"]


async def test_instances_must_say_they_speak_mcp(
    database_url: str, tmp_path: Path, instances: list[DemoInstance]
) -> None:
    app = build_app(database_url, tmp_path, workflows=[SEARCH], DEMO_SERVICES="false")
    async with running(app) as client:
        accounts = Accounts(app, client)
        tenant = await accounts.tenant()
        service = {"Authorization": f"Bearer {await accounts.token(Role.service, tenant)}"}
        operator = {"Authorization": f"Bearer {await accounts.token(Role.operator, tenant)}"}
        url = instances[0].notion_url
        await client.post("/api/v1/registry/register", headers=service, json={
            "service_name": "kb", "service_url": url, "health_check_url": f"{url}/health",
        })  # fmt: skip
        run = await trigger_run(client, operator, "search_kb")
        status = await finished_run(client, operator, run["workflow_id"], timeout=60)
    assert status["status"] == "failed"
    assert steps_of(status)["search"]["error"]["class"] == "mcp_no_healthy_instance"
