"""`GET /api/v1/workflows/templates`: what a server can run, enough to draw each graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Accounts, build_app, running
from workflow_engine.auth.permissions import Role
from workflow_engine.bootstrap.lifecycle import ServiceStartError

FAN_OUT: dict[str, Any] = {
    "name": "fan_out",
    "version": 2,
    "description": "Two branches and a join.",
    "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                     "examples": [{"n": 2}]},
    "steps": [
        {"id": "start", "uses": "transform", "with": {"n": "{{ input.n }}"}},
        {"id": "left", "uses": "transform", "needs": ["start"]},
        {"id": "right", "uses": "transform", "needs": ["start"], "if": "input.n > 1"},
        {"id": "join", "uses": "transform", "needs": ["left", "right"]},
    ],
}  # fmt: skip


async def test_templates_list_the_built_in_and_registered_workflows(
    database_url: str, tmp_path: Path
) -> None:
    older = {**FAN_OUT, "version": 1, "description": "The first cut."}
    app = build_app(database_url, tmp_path, workflows=[older, FAN_OUT])
    async with running(app) as client:
        headers = {"Authorization": f"Bearer {await Accounts(app, client).token(Role.viewer)}"}
        listed = await client.get("/api/v1/workflows/templates", headers=headers)
        assert listed.status_code == 200, listed.text
        by_name = {t["name"]: t for t in listed.json()["items"]}
        assert {"order_summary", "fan_out"} <= set(by_name)
        fan_out = by_name["fan_out"]
        assert (fan_out["version"], fan_out["versions"]) == (2, [1, 2])
        assert fan_out["example_input"] == {"n": 2}
        assert [(s["id"], s["needs"]) for s in fan_out["steps"]] == [
            ("start", []), ("left", ["start"]), ("right", ["start"]), ("join", ["left", "right"]),
        ]  # fmt: skip
        assert fan_out["steps"][2]["if"] == "input.n > 1"
        # `with` as written, for a reader to see what each step is given.
        assert [s["with"] for s in fan_out["steps"]] == [{"n": "{{ input.n }}"}, {}, {}, {}]

        first = await client.get(
            "/api/v1/workflows/templates/fan_out", params={"version": 1}, headers=headers
        )
        assert first.json()["description"] == "The first cut."
        summary = await client.get("/api/v1/workflows/templates/order_summary", headers=headers)
        assert summary.json()["example_input"]["customer"] == "Ada Lovelace"

        missing = await client.get("/api/v1/workflows/templates/nope", headers=headers)
        assert missing.status_code == 404
        available = (
            "available: customer_support, fan_out, knowledge_base, order_summary, support_agent"
        )
        assert available in missing.json()["detail"]
        bad_name = await client.get("/api/v1/workflows/templates/Not-A-Name", headers=headers)
        assert bad_name.status_code == 422
        anonymous = await client.get("/api/v1/workflows/templates")
        assert anonymous.status_code == 401


async def test_a_broken_workflows_dir_stops_the_start(database_url: str, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "broken.json").write_text(json.dumps({**FAN_OUT, "steps": [
        {"id": "a", "uses": "crm.lookup"}]}))  # fmt: skip
    app = build_app(database_url, tmp_path, WORKFLOWS_DIR=str(flows))
    with pytest.raises(ServiceStartError, match=r"broken\.json: step .a.: uses: unknown node"):
        async with running(app):
            pass


async def test_templates_need_a_credential(client: httpx.AsyncClient, accounts: Accounts) -> None:
    service = {"Authorization": f"Bearer {await accounts.token(Role.service)}"}
    assert (await client.get("/api/v1/workflows/templates", headers=service)).status_code == 200
