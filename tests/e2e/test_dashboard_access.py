"""The dashboard in Debian's Chromium: phone width, the keyboard alone, signing out, and
nothing requested from another host."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DashboardApi, Tab, Tabs, expect

pytestmark = pytest.mark.e2e

RUN_PATH = re.compile(r"/ui/runs/[0-9a-f-]{36}$")
# The contract's policy (docs/ui.md), directive by directive.
CSP = ["default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
       "connect-src 'self'", "base-uri 'none'", "form-action 'self'",
       "frame-ancestors 'none'"]  # fmt: skip
PARKED = {"ticket_id": "12345", "require_approval": True}
NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


async def test_at_phone_width_nothing_scrolls_sideways_and_the_nav_works(
    tabs: Tabs, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    for _ in range(2):  # rows in the runs table
        run = await dashboard_api.trigger(
            admin_token, "customer_support", {"ticket_id": "12345"}, wait=30
        )
        assert run["status"] == "completed", run
    tab = await tabs.open(width=390, height=844)
    page = tab.page
    await tab.sign_in(*dashboard_user)

    await reach_by_nav(tab, "Templates")
    await expect(page.locator("table[data-testid=templates-table]")).to_be_visible()
    await reach_by_nav(tab, "Runs")
    rows = page.locator("table[data-testid=runs-table] tr[data-run-id]")
    await expect(rows.first).to_be_visible()
    assert await page.evaluate(NO_HORIZONTAL_SCROLL), "the runs page scrolls sideways"

    await rows.first.get_by_role("link").first.click()
    await expect(page.locator("[data-testid=run-status]")).to_have_attribute(
        "data-status", "completed"
    )
    await expect(page.locator("svg[data-testid=run-graph] g.node").first).to_be_visible()
    assert await page.evaluate(NO_HORIZONTAL_SCROLL), "the run page scrolls sideways"

    for name, loaded in PAGE_LOADED:  # and every other page of the menu
        await reach_by_nav(tab, name)
        await expect(page.locator(loaded).first).to_be_visible()
        assert await page.evaluate(NO_HORIZONTAL_SCROLL), f"the {name} page scrolls sideways"


async def reach_by_nav(tab: Tab, name: str) -> None:
    """Follows a nav link, opening the menu first when the narrow layout folds it away."""
    link = tab.nav_link(name)
    if not await link.is_visible():
        menu = tab.page.get_by_role("button", name=re.compile("menu", re.IGNORECASE))
        await expect(menu).to_be_visible()
        await menu.click()
    await link.click()


async def test_the_trigger_form_works_by_keyboard_alone(
    tab: Tab, dashboard_user: tuple[str, str]
) -> None:
    page = tab.page
    await tab.sign_in(*dashboard_user)
    await tab.nav_link("Templates").click()
    row = page.locator("table[data-testid=templates-table] tr[data-template=customer_support]")
    await row.get_by_role("link").first.focus()
    await page.keyboard.press("Enter")
    form = page.locator("form[data-testid=trigger-form]")
    first = form.locator("[name=ticket_id]")
    await expect(first).to_have_value("12345")

    await tab_until_focused(tab, first)
    await page.keyboard.press("ControlOrMeta+a")
    await page.keyboard.press("Delete")  # required: empty is invalid
    await page.keyboard.press("Tab")
    await page.keyboard.type(" Fast, please.")
    submit = form.get_by_role("button", name="Start run")
    await tab_until_focused(tab, submit)
    await page.keyboard.press("Enter")

    error = form.locator("[data-field-error=ticket_id]")
    await expect(error).to_be_visible()
    await expect(error).not_to_have_text("")
    await expect(first).to_have_attribute("aria-invalid", "true")
    await expect(first).to_be_focused()
    assert "/ui/templates/" in page.url

    await page.keyboard.type("12345")
    await tab_until_focused(tab, submit)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(RUN_PATH)
    await expect(page.locator("[data-testid=run-status]")).to_be_visible()


async def tab_until_focused(tab: Tab, target: Any, most: int = 60) -> None:
    """Presses Tab until `target` has the focus (failing after `most` presses)."""
    for _ in range(most):
        if await target.evaluate("element => element === document.activeElement"):
            return
        await tab.page.keyboard.press("Tab")
    await expect(target).to_be_focused()


# Records what the page fetches while the sign-in form is shown: signing out draws it at
# once, before anything is sent, so a request that started earlier is not counted.
RECORD_FETCHES_SIGNED_OUT = """() => {
  const fetchOnline = window.fetch;
  window.fetchedSignedOut = [];
  window.fetch = (resource, options) => {
    if (document.querySelector("form[data-testid=sign-in]")) {
      window.fetchedSignedOut.push(String(resource));
    }
    return fetchOnline(resource, options);
  };
}"""


async def test_sign_out_ends_the_streams_and_revokes_both_tokens(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    run = await dashboard_api.trigger(admin_token, "customer_support", PARKED, wait=30)
    assert run["status"] == "waiting", run
    page = tab.page
    login = await tab.sign_in(*dashboard_user)
    await tab.open_run(run["workflow_id"])
    await expect(page.locator("[data-testid=run-logs] li[data-log-id]").first).to_be_visible()
    # The run's log and events, followed live.
    await tab.until(lambda: len(tab.open_api_requests()) >= 2, what="two streams open")
    token = tab.last_token()
    me = await dashboard_api.call(token, "GET", "/api/v1/auth/me")
    assert me.status_code == 200, me.text

    await page.evaluate(RECORD_FETCHES_SIGNED_OUT)
    async with page.expect_response(
        lambda answer: answer.url.endswith("/api/v1/auth/logout") and answer.status != 429
    ) as logout:
        await page.get_by_role("button", name="Sign out").click()
    assert (await logout.value).status == 204
    await expect(page.locator("form[data-testid=sign-in]")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    await tab.until(lambda: not tab.open_api_requests(), what="every stream ends")
    # The logout (sent again if the rate limit refused it first), and nothing else.
    sent = await page.evaluate("window.fetchedSignedOut")
    assert set(sent) == {"/api/v1/auth/logout"}, "requests after signing out"

    after = await dashboard_api.call(token, "GET", "/api/v1/auth/me")
    assert after.status_code == 401, after.text
    refused = await refresh(tab.origin, login["refresh_token"])
    assert refused.status_code == 401, refused.text
    await dashboard_api.call(admin_token, "POST", f"/api/v1/workflows/{run['workflow_id']}/cancel")


async def refresh(origin: str, refresh_token: str) -> httpx.Response:
    """`POST /auth/refresh`, anonymous: a 429 (the address's limit) is waited out."""
    async with httpx.AsyncClient(base_url=origin, timeout=30) as client:
        for _ in range(10):
            answer = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": refresh_token}
            )
            if answer.status_code != 429:
                break
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
    return answer


# Each page, and what shows it loaded, with data or without (other tests add data).
PAGE_LOADED = [
    ("Templates", "table[data-testid=templates-table] tr[data-template]"),
    ("Services", "table[data-testid=services-table], main p.empty"),
    ("Usage", "svg[data-testid=usage-chart]"),
    ("Schedules", "table[data-testid=schedules-table], main p.empty"),
    ("Approvals", "table[data-testid=approvals-table], main p.empty"),
    ("Admin", "table[data-testid=users-table] tr[data-user-id]"),
]
TOKEN_PARAMETER = re.compile(r"[?&#](?:access_|refresh_)?token=", re.IGNORECASE)


async def test_a_page_load_asks_only_the_server_and_keeps_no_credential(
    tab: Tab, dashboard_user: tuple[str, str]
) -> None:
    page = tab.page
    shell = await page.goto(f"{tab.origin}/ui/")
    assert shell is not None
    assert shell.status == 200
    policy = shell.headers["content-security-policy"]
    assert [d.strip() for d in policy.split(";") if d.strip()] == CSP, policy
    login = await tab.sign_in(*dashboard_user)
    visited = [page.url]
    for name, loaded in PAGE_LOADED:
        await tab.nav_link(name).click()
        await expect(page).to_have_url(f"{tab.origin}/ui/{name.lower()}")
        await expect(page.locator(loaded).first).to_be_visible()
        await expect_no_error(page)
        visited.append(await page.evaluate("location.href"))

    assert f"{tab.origin}/ui/static/app.js" in tab.requests
    assert any(url.startswith(f"{tab.origin}/api/v1/") for url in tab.requests)
    assert tab.foreign_requests() == []
    stored = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""], "a credential left the page's memory"
    tokens = {login["access_token"], login["refresh_token"]}
    tokens |= {sent.removeprefix("Bearer ") for sent in tab.authorizations}
    urls = tab.requests + visited
    leaked = [url for url in urls if TOKEN_PARAMETER.search(url) or any(t in url for t in tokens)]
    assert leaked == [], "a token in a URL"


# Each page, reached from the nav, and what shows that its data arrived.
PAGE_DATA = [
    ("Runs", "table[data-testid=runs-table] tr[data-run-id]"),
    ("Approvals", "table[data-testid=approvals-table] tr[data-run-id]"),
    ("Templates", "table[data-testid=templates-table] tr[data-template]"),
    ("Schedules", "table[data-testid=schedules-table], main p.empty"),
    ("Usage", "svg[data-testid=usage-chart]"),
    ("Services", "tr[data-service-id] svg[data-testid=latency-history]:not([aria-label^=Loading])"),
    ("Admin", "table[data-testid=users-table] tr[data-user-id]"),
]


async def test_every_page_shows_its_data_at_the_default_rate_limits(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    """Clicked through faster than the burst of 10 requests allows: api.js waits the refused
    requests out (a status says so), and no page shows a 429 or any other error."""
    parked = {"ticket_id": "12345", "require_approval": True}
    run = await dashboard_api.trigger(admin_token, "customer_support", parked)
    assert run["status"] == "waiting", run
    await register_checked_service(dashboard_api, admin_token, tab.origin)
    page = tab.page
    refused: list[str] = []
    page.on("response", lambda answer: answer.status == 429 and refused.append(answer.url))
    await tab.sign_in(*dashboard_user)

    for name, data in PAGE_DATA:
        await tab.nav_link(name).click()
        await expect(page.locator(data).first).to_be_visible()
        await expect_no_error(page)
        if name == "Runs":
            await page.locator(f"tr[data-run-id='{run['workflow_id']}'] a").first.click()
            await expect(page.locator("svg[data-testid=run-graph] g.node").first).to_be_visible()
            await expect(
                page.locator("[data-testid=run-events] li[data-position]").first
            ).to_be_visible()
            await expect(
                page.locator("[data-testid=run-logs] li[data-log-id]").first
            ).to_be_visible()
            await expect_no_error(page)
        if name == "Templates":
            await page.locator("tr[data-template=customer_support] a").first.click()
            await expect(page.locator("form[data-testid=trigger-form]")).to_be_visible()
            await expect_no_error(page)

    await expect(page.locator("[data-testid=rate-limit-status]")).to_have_text("")
    print(f"429s waited out by the dashboard: {len(refused)}")
    await dashboard_api.call(admin_token, "POST", f"/api/v1/workflows/{run['workflow_id']}/cancel")


async def expect_no_error(page: Any) -> None:
    main = page.locator("main")
    # A form's error summary is an empty, hidden alert until it has something to say.
    await expect(main.locator(".notice-error:visible, [role=alert]:visible")).to_have_count(0)
    await expect(main).not_to_contain_text("Too Many Requests")


async def register_checked_service(dashboard_api: DashboardApi, token: str, origin: str) -> None:
    """A service checked against the server's own /health, once it has a check to show."""
    service = {"service_name": "dashboard-probe", "service_url": f"{origin}/demo/mcp/slack/",
               "health_check_url": f"{origin}/health", "tags": ["test"]}  # fmt: skip
    answer = await dashboard_api.call(token, "POST", "/api/v1/registry/register", json=service)
    assert answer.status_code in (200, 201), answer.text
