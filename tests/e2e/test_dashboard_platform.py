"""The dashboard's platform: the router (its page table against the server's, fragments, bad
paths), the session (refreshes that fail for now, a role changed by an admin) and api.js's
event-stream reader, run in Debian's Chromium against a stubbed `fetch`."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, DashboardApi, Tab, expect
from workflow_engine.ui.routes import PAGES

pytestmark = pytest.mark.e2e

ROUTER = ROOT / "src/workflow_engine/ui/static/router.js"
# A route's pattern in router.js: `pattern: /^\/ui\/runs\/([^/]+)$/,`
ROUTE_PATTERN = re.compile(r"pattern: /(.+?)/,")
PATH_PARAMETER = re.compile(r"\{\w+\}")
PARKED = {"ticket_id": "12345", "require_approval": True}
# Two animation frames: time enough for a re-render the page should not start to show up.
TWO_FRAMES = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def router_patterns() -> list[re.Pattern[str]]:
    """router.js's route patterns, as Python patterns (the two syntaxes agree on these)."""
    found = ROUTE_PATTERN.findall(ROUTER.read_text())
    return [re.compile(pattern.replace("\\/", "/")) for pattern in found]


def test_the_server_and_the_router_know_the_same_pages() -> None:
    patterns = router_patterns()
    assert patterns, f"no route patterns found in {ROUTER}"
    for page in PAGES:
        sample = PATH_PARAMETER.sub("a-1", page)
        matching = [pattern for pattern in patterns if pattern.fullmatch(sample)]
        assert len(matching) == 1, f"{page}: {len(matching)} routes in router.js match it"
        assert matching[0].groups == len(PATH_PARAMETER.findall(page)), page
    for pattern in patterns:
        assert any(pattern.fullmatch(PATH_PARAMETER.sub("a-1", page)) for page in PAGES), (
            f"router.js draws {pattern.pattern}, which the server does not serve (PAGES)"
        )


async def api_requests(tab: Tab) -> list[str]:
    """The API requests the page made so far, once anything it just started shows up."""
    await tab.page.evaluate(TWO_FRAMES)
    return [url for url in tab.requests if "/api/" in url]


async def test_skip_link_and_fragments_keep_the_page_as_it_is(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    run = await dashboard_api.trigger(admin_token, "customer_support", PARKED, wait=30)
    assert run["status"] == "waiting", run
    page = tab.page
    await tab.sign_in(*dashboard_user)
    await tab.open_run(run["workflow_id"])
    await page.locator("svg[data-testid=run-graph] g.node[data-step=fetch]").click()
    detail = page.locator("[data-testid=step-detail][data-step=fetch]")
    await expect(detail).to_be_visible()
    await expect(page.locator("[data-testid=run-events] li[data-position]").first).to_be_visible()
    await page.evaluate("window.drawn = document.querySelector('main h1')")
    sent = await api_requests(tab)

    # The skip link comes first: just before the header's first link.
    await page.locator("header .brand a").focus()
    await page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()
    assert await page.evaluate("location.hash") == "", "the skip link put a fragment in the URL"

    # A fragment reached some other way (typed, or Back from it) changes nothing either.
    await page.evaluate("location.hash = 'main'")
    await page.go_back()
    await page.wait_for_function("location.hash === ''")

    assert await page.evaluate("window.drawn === document.querySelector('main h1')"), (
        "the page was drawn again"
    )
    await expect(detail).to_be_visible()
    assert await api_requests(tab) == sent, "the page asked the API again"
    await dashboard_api.call(admin_token, "POST", f"/api/v1/workflows/{run['workflow_id']}/cancel")


async def test_a_path_that_is_not_valid_percent_encoding_is_no_page(
    tab: Tab, dashboard_user: tuple[str, str]
) -> None:
    page = tab.page
    await tab.sign_in(*dashboard_user)
    await page.evaluate(
        "history.pushState(null, '', '/ui/runs/%E0%A4%A');"
        "dispatchEvent(new PopStateEvent('popstate'))"
    )
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await expect(page).to_have_title(re.compile("^Not found"))
    # Still routing: the nav leads on (and an uncaught URIError would fail the test at the end).
    await tab.nav_link("Templates").click()
    await expect(page.locator("table[data-testid=templates-table]")).to_be_visible()


def problem(status: int, title: str) -> dict[str, Any]:
    return {
        "status": status,
        "content_type": "application/problem+json",
        "body": json.dumps({"type": "about:blank", "title": title, "status": status}),
    }


async def test_a_refresh_that_fails_for_now_keeps_the_session_and_a_new_role_redraws(
    tab: Tab, dashboard_api: DashboardApi, admin_token: str, dashboard_user: tuple[str, str]
) -> None:
    """An admin demotes the signed-in user: their token is outdated, the dashboard refreshes
    it — through two 503s — and draws the layout for the new role. A refused refresh (401)
    then ends the session."""
    page = tab.page
    login = await tab.sign_in(*dashboard_user)
    await expect(tab.nav_link("Admin")).to_be_visible()
    refreshes: list[int] = []

    async def unavailable_twice(route: Any) -> None:
        refreshes.append(len(refreshes))
        if len(refreshes) <= 2:
            await route.fulfill(**problem(503, "Service Unavailable"))
        else:
            await route.continue_()

    await page.route("**/api/v1/auth/refresh", unavailable_twice)
    user = f"/api/v1/users/{login['user']['id']}"
    await change_role(dashboard_api, admin_token, user, "operator", tab.last_token())

    await tab.nav_link("Templates").click()
    await expect(tab.nav_link("Admin")).to_have_count(0)
    await expect(page.locator("table[data-testid=templates-table] tr[data-template]").first
                 ).to_be_visible()  # fmt: skip
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await expect(page.locator("main [role=alert]")).to_have_count(0)
    assert len(refreshes) == 3, refreshes

    await page.unroute("**/api/v1/auth/refresh")
    await page.route("**/api/v1/auth/refresh",
                     lambda route: route.fulfill(**problem(401, "Unauthorized")))  # fmt: skip
    await change_role(dashboard_api, admin_token, user, "viewer", tab.last_token())
    await tab.nav_link("Runs").click()
    await expect(page.locator("form[data-testid=sign-in]")).to_be_visible()
    await expect(page.get_by_text("Your session ended")).to_be_visible()


async def change_role(
    dashboard_api: DashboardApi, admin_token: str, user: str, role: str, outdated: str
) -> None:
    """Changes a user's role, and returns once the server refuses their `outdated` token."""
    changed = await dashboard_api.call(admin_token, "PATCH", user, json={"role": role})
    assert changed.status_code == 200, changed.text
    deadline = asyncio.get_running_loop().time() + 30
    while (await dashboard_api.call(outdated, "GET", "/api/v1/auth/me")).status_code != 401:
        assert asyncio.get_running_loop().time() < deadline, "the old token is still accepted"
        await asyncio.sleep(0.2)


# api.js's sse() against a stubbed fetch: three connections, as a server might answer them.
SSE_PARSER = """
async () => {
  const { sse, useCredentials } = await import("/ui/static/api.js");
  let current = "T1";
  const renewed = [];
  useCredentials({
    token: () => current,
    renew: async (refused) => { renewed.push(refused); return true; },
  });
  const encoder = new TextEncoder();
  const connects = [];
  let dropFirst = null;
  let droppedAt = 0;
  const body = (chunks, { close = true } = {}) => new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      if (close) controller.close();
      else dropFirst = (error) => controller.error(error);
    },
  });
  const answers = [
    // A comment, `retry`, a CRLF split across chunks, two data lines, a message with an id,
    // and then one cut off before its blank line by a dropped connection.
    () => body([": hello\\r\\n", "retry: 2500\\r\\n\\r\\n", "data: line one\\r",
                "\\ndata: line two\\r\\n\\r", "\\n",
                'id: 4\\ndata: {"n": 4}\\n\\nid: 5\\ndata: {"n": 5}\\n'], { close: false }),
    // The cut-off message again; the page has refreshed meanwhile (T2), and then the server
    // says the stream's credential (T1) ran out.
    () => {
      current = "T2";
      return body(['id: 5\\ndata: {"n": 5}\\n\\n', 'event: closed\\ndata: {"status": 401}\\n\\n']);
    },
    () => body(["event: end\\ndata: {}\\n\\n"]),
  ];
  window.fetch = async (url, init) => {
    connects.push({
      authorization: init.headers.Authorization,
      lastEventId: init.headers["Last-Event-ID"] || null,
      after: droppedAt ? performance.now() - droppedAt : null,
    });
    const answer = answers[connects.length - 1];
    if (!answer) throw new TypeError("no more answers");
    const headers = { "Content-Type": "text/event-stream" };
    return new Response(answer(), { status: 200, headers });
  };
  const messages = [];
  for await (const message of sse("/api/v1/events/stream")) {
    messages.push(message);
    if (message.id === "4") {
      droppedAt = performance.now();
      dropFirst(new TypeError("network error"));
    }
  }
  return { connects, messages, renewed };
}
"""


async def test_the_event_stream_reader_parses_resumes_and_renews_as_it_should(tab: Tab) -> None:
    page = tab.page
    await page.goto(f"{tab.origin}/ui/")
    result = await asyncio.wait_for(page.evaluate(SSE_PARSER), timeout=60)

    assert result["messages"] == [
        {"event": "message", "id": None, "data": "line one\nline two"},
        {"event": "message", "id": "4", "data": {"n": 4}},
        {"event": "message", "id": "5", "data": {"n": 5}},
        {"event": "end", "id": None, "data": {}},
    ]
    first, resumed, renewed = result["connects"]
    assert [c["authorization"] for c in result["connects"]] == [
        "Bearer T1",
        "Bearer T1",
        "Bearer T2",
    ]
    # Resumed after the last message dispatched whole, not the one the drop cut off.
    assert [first["lastEventId"], resumed["lastEventId"], renewed["lastEventId"]] == [
        None,
        "4",
        "5",
    ]
    # The server's `retry` (2.5 s) replaced the first reconnect delay (1 s).
    assert resumed["after"] >= 2400, resumed
    # The stream renewed the token it had used, not the one the page had refreshed to.
    assert result["renewed"] == ["T1"]
