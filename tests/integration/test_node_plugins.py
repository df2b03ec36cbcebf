"""A node type from an installed package (the `workflow_engine.nodes` entry-point group) is
listed with its arguments at `GET /api/v1/workflows/nodes` and runs in a workflow."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Accounts, build_app, finished_run, running, trigger_run
from workflow_engine.auth.permissions import Role
from workflow_engine.nodes.registry import registry

PLUGIN = '''
"""Greetings for the tests."""

from workflow_engine.nodes import NodeContext, node


@node("acme.greet")
async def greet(ctx: NodeContext, *, name: str, excited: bool = False) -> dict:
    """Greets someone by name.

    Nothing more to it.
    """
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}"}
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`acme-nodes` as pip leaves it in site-packages: its module and its dist-info, whose
    entry points name the module in the `workflow_engine.nodes` group."""
    site = tmp_path / "site-packages"
    (site / "acme_nodes").mkdir(parents=True)
    (site / "acme_nodes" / "__init__.py").write_text(PLUGIN)
    info = site / "acme_nodes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nodes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[workflow_engine.nodes]\nacme = acme_nodes\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    registry.unregister("acme.greet")
    sys.modules.pop("acme_nodes", None)


async def test_an_installed_plugin_is_listed_and_runs(
    installed_plugin: None, database_url: str, tmp_path: Path
) -> None:
    workflow = {
        "name": "greeting",
        "steps": [{"id": "hi", "uses": "acme.greet", "with": {"name": "{{ input.name }}"}}],
        "output": "{{ steps.hi.output.greeting }}",
    }
    app = build_app(database_url, tmp_path, workflows=[workflow])
    async with running(app) as client:
        accounts = Accounts(app, client)
        viewer = {"Authorization": f"Bearer {await accounts.token(Role.viewer)}"}
        listed = await client.get("/api/v1/workflows/nodes", headers=viewer)
        assert listed.status_code == 200, listed.text
        found = {item["name"]: item for item in listed.json()["items"]}
        greet = found["acme.greet"]
        assert greet["module"] == "acme_nodes"
        assert greet["description"] == "Greets someone by name."
        arguments = greet["arguments"]
        assert arguments["required"] == ["name"]
        assert arguments["properties"]["name"]["type"] == "string"
        assert arguments["properties"]["excited"] == {
            "type": "boolean",
            "default": False,
            "title": "Excited",
        }
        assert arguments["additionalProperties"] is False
        assert found["transform"]["arguments"].get("additionalProperties") is True
        assert found["sleep"]["module"] == "engine"
        assert {"http.request", "llm.chat", "mcp.call"} <= set(found)

        operator = {"Authorization": f"Bearer {await accounts.token(Role.operator)}"}
        run = await trigger_run(client, operator, "greeting", {"name": "Ada"})
        done = await finished_run(client, operator, run["workflow_id"])
        assert done["status"] == "completed"
        results = (await client.get(run["links"]["results"], headers=operator)).json()
        assert results["output"] == "Hello, Ada."

        anonymous = await client.get("/api/v1/workflows/nodes")
        assert anonymous.status_code == 401
