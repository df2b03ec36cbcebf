"""The dashboard in Debian's Chromium, against a server installed from the wheel: trigger
`customer_support` from its form and watch it, cancel, approve, and what a viewer may not do."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from mcp import Client

from tests.e2e.conftest import DashboardApi, Server, Tab, Tabs, expect

pytestmark = pytest.mark.e2e

RUN_PATH = re.compile(r"/ui/runs/([0-9a-f-]{36})$")
PARKED = {"ticket_id": "12345", "customer_message": "I need help with my order",
          "require_approval": True}  # fmt: skip
ACTIONS = ["cancel", "retry", "replay", "approve", "reject"]


async def shown_json(panel: Any) -> Any:
    """The JSON a panel shows: its `<pre>` when it has one (a panel may have a heading)."""
    block = panel.locator("pre").first if await panel.locator("pre").count() else panel
    return json.loads(await block.text_content())


async def helpscout_conversation(server: Server, conversation_id: str) -> dict[str, Any]:
    """The demo HelpScout's record of a conversation, replies and drafts included."""
    async with Client(f"{server.url}/demo/mcp/helpscout/") as client:
        result = await client.call_tool("get_conversation", {"conversation_id": conversation_id})
    assert not result.is_error, result.content
    return dict(result.structured_content or {})


async def test_trigger_customer_support_from_its_form_and_watch_it_complete(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    page = tab.page
    await tab.sign_in(*dashboard_user)
    await tab.nav_link("Templates").click()
    row = page.locator("table[data-testid=templates-table] tr[data-template=customer_support]")
    await row.get_by_role("link").first.click()
    await expect(page.locator("svg[data-testid=template-graph]")).to_be_visible()

    form = page.locator("form[data-testid=trigger-form]")
    # Prefilled with the template's example.
    await expect(form.locator("[name=ticket_id]")).to_have_value("12345")
    await expect(form.locator("[name=customer_message]")).to_have_value("I need help with my order")
    await form.locator("[name=customer_message]").fill("I need help with my order, please")
    await form.get_by_role("button", name="Start run").click()

    await expect(page).to_have_url(RUN_PATH)
    run_match = RUN_PATH.search(page.url)
    assert run_match is not None
    run_id = run_match.group(1)
    await expect(page.locator("[data-testid=run-status]")).to_have_attribute(
        "data-status", "completed"
    )
    status = await dashboard_api.until_status(admin_token, run_id, {"completed"})
    graph = page.locator("svg[data-testid=run-graph]")
    for step in status["steps"]:  # completed, or skipped where `if` was false
        node = graph.locator(f"g.node[data-step='{step['id']}']")
        await expect(node).to_have_attribute("data-status", step["status"])
    assert {s["status"] for s in status["steps"]} == {"completed", "skipped"}

    outputs = await dashboard_api.step_outputs(admin_token, run_id)
    await graph.locator("g.node[data-step=draft]").click()
    detail = page.locator("[data-testid=step-detail]")
    output = detail.locator("[data-testid=step-output]")
    await expect(output).to_contain_text(outputs["draft"]["text"][:40])
    assert await shown_json(output) == outputs["draft"]

    logs = page.locator("[data-testid=run-logs]")
    follow = page.locator("input[name=follow]")
    await follow.check()
    await expect(follow).to_be_checked()
    await expect(logs.locator("li[data-log-id]").first).to_be_visible()
    await expect(logs).to_contain_text("llm call")


@pytest.mark.parametrize(
    ("workflow", "data", "waiting_step"),
    [("slow_digest", {}, "wait"), ("customer_support", PARKED, "approve")],
    ids=["sleeping", "awaiting-approval"],
)
async def test_cancel_a_slow_run_and_see_it_turn_cancelled(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str],
    workflow: str, data: dict[str, Any], waiting_step: str,
) -> None:  # fmt: skip
    page = tab.page
    run = await dashboard_api.trigger(admin_token, workflow, data)
    run = await dashboard_api.until_status(admin_token, run["workflow_id"], {"waiting"})
    await tab.sign_in(*dashboard_user)
    await tab.open_run(run["workflow_id"])
    status = page.locator("[data-testid=run-status]")
    await expect(status).to_have_attribute("data-status", "waiting")
    node = page.locator(f"svg[data-testid=run-graph] g.node[data-step={waiting_step}]")
    await expect(node).to_have_attribute("data-status", "waiting")
    await page.evaluate("window.notReloaded = true")

    await page.locator("button[data-action=cancel]").click()
    dialog = page.locator("dialog[data-testid=confirm]")
    await expect(dialog).to_be_visible()
    await dialog.locator("button[value=confirm]").click()

    await expect(status).to_have_attribute("data-status", "cancelled")
    await expect(node).to_have_attribute("data-status", "cancelled")
    assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
    await expect(page.locator("button[data-action=cancel]")).to_have_count(0)
    found = await dashboard_api.until_status(admin_token, run["workflow_id"], {"cancelled"})
    assert found["status"] == "cancelled"


async def test_approve_an_edited_reply_and_the_run_sends_it(
    tab: Tab,
    dashboard_api: DashboardApi,
    admin_token: str,
    dashboard_server: Server,
    dashboard_user: tuple[str, str],
) -> None:
    page = tab.page
    run = await dashboard_api.trigger(admin_token, "customer_support", PARKED)
    run_id = run["workflow_id"]
    assert run["status"] == "waiting", run
    await tab.sign_in(*dashboard_user)

    await tab.nav_link("Approvals").click()
    waiting = page.locator(
        f"table[data-testid=approvals-table] tr[data-run-id='{run_id}'][data-step=approve]"
    )
    await expect(waiting.locator("button[data-action=approve]")).to_be_visible()
    await waiting.get_by_role("link").first.click()

    await expect(page.locator("[data-testid=run-status]")).to_have_attribute(
        "data-status", "waiting"
    )
    await expect(page.locator("g.node[data-step=approve]")).to_have_attribute(
        "data-status", "waiting"
    )
    logs = page.locator("[data-testid=run-logs]")
    await expect(page.locator("input[name=follow]")).to_be_checked()
    entries = logs.locator("li[data-log-id]")
    await expect(entries.first).to_be_visible()
    before = await entries.count()

    edited = f"Your order is on its way (checked by {uuid.uuid4().hex[:8]})."
    await page.locator("button[data-action=approve]").click()
    dialog = page.locator("dialog[open]")
    await expect(dialog).to_be_visible()
    # The proposal, as JSON, to edit before approving.
    proposal = dialog.get_by_label(re.compile("proposal", re.IGNORECASE))
    await expect(proposal).to_have_value(re.compile("carrier"))
    await proposal.fill(json.dumps(edited))
    await dialog.locator("button[value=confirm]").click()

    await expect(page.locator("[data-testid=run-status]")).to_have_attribute(
        "data-status", "completed"
    )
    # Followed live: the reply step's entries arrive without a reload.
    await expect(entries).not_to_have_count(before)
    await expect(logs).to_contain_text("step reply started")
    results = await dashboard_api.get(admin_token, f"/api/v1/workflows/{run_id}/results")
    assert results["output"]["reply"] == edited
    [action] = results["output"]["actions"]
    conversation = await helpscout_conversation(dashboard_server, "12345")
    [draft] = [t for t in conversation["threads"] if t["id"] == action["thread_id"]]
    assert edited in draft["body"]


async def test_a_viewer_sees_no_action_and_the_api_refuses_it(
    tabs: Tabs, dashboard_api: DashboardApi, admin_token: str
) -> None:
    email, password = f"viewer-{uuid.uuid4().hex[:8]}@example.com", "a viewer's long passphrase"
    await dashboard_api.create_user(admin_token, email, "viewer", password)
    run = await dashboard_api.trigger(admin_token, "customer_support", PARKED)
    run_id = run["workflow_id"]
    tab = await tabs.open()
    page = tab.page
    await tab.sign_in(email, password)

    await tab.open_run(run_id)
    await expect(page.locator("[data-testid=run-status]")).to_have_attribute(
        "data-status", "waiting"
    )
    await expect(page.locator("g.node[data-step=approve][data-status=waiting]")).to_be_visible()
    for action in ACTIONS:
        await expect(page.locator(f"button[data-action={action}]")).to_have_count(0)

    await tab.nav_link("Approvals").click()
    row = page.locator(f"table[data-testid=approvals-table] tr[data-run-id='{run_id}']")
    await expect(row).to_be_visible()
    await expect(page.locator("button[data-action]")).to_have_count(0)

    await tab.nav_link("Templates").click()
    template = page.locator("table[data-testid=templates-table] tr[data-template=customer_support]")
    await template.get_by_role("link").first.click()
    await expect(page.locator("svg[data-testid=template-graph]")).to_be_visible()
    # The page drew (not an error in the form's place), without the form.
    read_only = page.get_by_text("Your role may read templates but not start runs.")
    await expect(read_only).to_be_visible()
    await expect(page.get_by_role("button", name="Start run")).to_have_count(0)
    await expect(tab.nav_link("Admin")).to_have_count(0)

    refused = await dashboard_api.call(tab.last_token(), "POST",
                                       f"/api/v1/workflows/{run_id}/cancel")  # fmt: skip
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 403
    cancelled = await dashboard_api.call(admin_token, "POST", f"/api/v1/workflows/{run_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
