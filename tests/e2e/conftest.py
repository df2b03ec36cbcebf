"""End-to-end: the real `workflow-engine` command, installed from a freshly built wheel.

Installing the wheel (not the source tree) proves that migrations, Swagger assets and every
other data file really ship in the package: an editable install would find them in the source
tree even if the wheel left them out (pitfall 13 in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from workflow_engine.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Where examples marked `<!-- tested: name -->` live: the README and the pages of docs/.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_markers() -> set[str]:
    """The names of every `<!-- tested: name -->` marker (a line of its own) in the README and
    docs/."""
    marker = re.compile(r"^<!-- tested: ([\w-]+) -->$", re.MULTILINE)
    return {name for doc in DOCUMENTS for name in marker.findall(doc.read_text())}


def documented_block(name: str, language: str = "python") -> str:
    """The code block right after `<!-- tested: name -->`: exactly one in the README and docs/."""
    pattern = re.compile(
        rf"^<!-- tested: {re.escape(name)} -->\n```{language}\n(.*?)```", re.DOTALL | re.MULTILINE
    )
    found = [match.group(1) for doc in DOCUMENTS for match in pattern.finditer(doc.read_text())]
    assert len(found) == 1, f"{len(found)} {language} blocks marked {name} in the README and docs/"
    return found[0]


def clean_environment() -> dict[str, str]:
    """The test's environment without any setting of ours, so that a developer's own
    DATABASE_URL or config file never leaks into a test server."""
    ours = {name.upper() for name in Settings.model_fields} | {"CONFIG_FILE"}
    return {k: v for k, v in os.environ.items() if k.upper() not in ours}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on a free port; stopped (SIGTERM) when the test ends."""

    args: list[str]
    cwd: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log_file: Path = Path("/dev/null")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Server:
        env = dict(clean_environment(), **self.env, PORT=str(self.port))
        # A file, not a pipe: a busy server fills a pipe nobody reads and then blocks on it.
        self.log_file = self.cwd / f"server-{self.port}.log"
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        if wait:
            self.wait_until_healthy()
        return self

    def wait_until_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"server not healthy within {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


@pytest.fixture
def server_factory(installed_bin: Path, tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class _Server(Server):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            command = list(args) or ["serve"]
            super().__init__(
                [str(installed_bin / "workflow-engine"), *command],
                cwd=tmp_path,
                env={"DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "json", **(env or {})},
            )
            started.append(self)

    yield _Server
    for server in started:
        if server.process and server.process.poll() is None:
            server.stop()


def run_cli(installed_bin: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [str(installed_bin / "workflow-engine"), *args], cwd=cwd, capture_output=True,
        text=True, timeout=60, env=dict(clean_environment(), **(env or {})),
    )  # fmt: skip


# --- the dashboard in a real browser (tests/e2e/test_dashboard_*.py) ---------------------

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: Playwright never downloads a browser
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The server's bootstrap admin: it only creates each test's own users and API keys. The
# server runs at the default rate limits (60 requests a minute per principal, a burst of 10;
# 600 a minute for the whole tenant, a burst of 100; logins 10 a minute per address, a burst
# of 5), as a person meets them: each test signs in as a user of its own and checks the API
# with an API key of its own, so no two tests share a principal's bucket. The tenant's ceiling
# and the address's logins are shared by the whole suite; the dashboard waits a refused
# request out (api.js), and so does DashboardApi.
DASHBOARD_ADMIN = ("admin@example.com", "a long dashboard passphrase")
DASHBOARD_PASSWORD = "a long dashboard passphrase for a test"
# Auto-waiting assertions give up after this long: generous, for a loaded CI machine (a page
# that needs more is a failure).
BROWSER_TIMEOUT_MS = 30_000
RATE_LIMIT_RETRIES = 10


# A run that takes its time: a durable ten-minute wait before its digest (a user's "slow run").
SLOW_WORKFLOW = """\
name: slow_digest
description: Waits ten minutes, then writes a digest.
input_schema: {type: object, examples: [{}]}
steps:
  - {id: wait, uses: sleep, with: {seconds: 600}}
  - {id: digest, uses: transform, needs: [wait], with: {text: "digest"}}
"""


@pytest.fixture(scope="session")
def dashboard_server(installed_bin: Path, tmp_path_factory: pytest.TempPathFactory,
                     ) -> Iterator[Server]:  # fmt: skip
    """One server for every browser test: its bootstrap admin is DASHBOARD_ADMIN; each test
    starts runs and users of its own, so they do not disturb one another."""
    work = tmp_path_factory.mktemp("dashboard")
    flows = work / "workflows"
    flows.mkdir()
    (flows / "slow_digest.yaml").write_text(SLOW_WORKFLOW)
    email, password = DASHBOARD_ADMIN
    server = Server(
        [str(installed_bin / "workflow-engine"), "serve"], cwd=work,
        env={"DATA_DIR": str(work / "data"), "LOG_FORMAT": "json", "WORKFLOWS_DIR": str(flows),
             "BOOTSTRAP_ADMIN_EMAIL": email, "BOOTSTRAP_ADMIN_PASSWORD": password},
    ).start()  # fmt: skip
    yield server
    server.stop()


def _browser_missing() -> str:
    """Why the browser tests cannot run here, or "" when they can."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed: {exc}"
    return "" if CHROMIUM.exists() else f"{CHROMIUM} is missing (apt-get install chromium)"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium driven by Playwright, one per session; skipped when either is missing
    (a failure under CI=true, where the browser tests must run)."""
    from tests.conftest import IN_CI

    missing = _browser_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}: the browser tests must run in CI")
        pytest.skip(missing)
    from playwright.async_api import async_playwright
    from playwright.async_api import expect as playwright_expect

    playwright_expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    playwright = await async_playwright().start()
    launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    await launched.close()
    await playwright.stop()


@dataclass
class Tab:
    """A page in a browser context of its own, with every request it made."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    # Requests sent and not yet finished or failed (an open event stream stays here).
    in_flight: list[Any] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the server (data: URLs never leave the browser)."""
        return [url for url in self.requests
                if not url.startswith((f"{self.origin}/", "data:", "blob:"))]  # fmt: skip

    def last_token(self) -> str:
        """The bearer token of the page's latest API call."""
        assert self.authorizations, "the page sent no Authorization header"
        return self.authorizations[-1].removeprefix("Bearer ")

    async def sign_in(self, email: str, password: str, path: str = "/ui/") -> dict[str, Any]:
        """Open `path` and sign in through the form; returns the login's answer (the tokens
        the page holds) once the layout is drawn."""
        await self.page.goto(f"{self.origin}{path}")
        form = self.page.locator("form[data-testid=sign-in]")
        await form.locator("input[name=email]").fill(email)
        await form.locator("input[name=password]").fill(password)
        async with self.page.expect_response(
            lambda answer: answer.url.endswith("/api/v1/auth/login") and answer.status == 200
        ) as login:
            await form.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()
        return dict(await (await login.value).json())

    def open_api_requests(self) -> list[str]:
        """The API requests still under way (open event streams among them)."""
        return [request.url for request in self.in_flight if "/api/" in request.url]

    async def until(self, condition: Any, timeout: float = 30, what: str = "") -> None:
        """Waits until `condition()` holds, checking as requests start and end."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.05)

    async def open_run(self, run_id: str) -> None:
        """From the runs page (Runs in the nav), the run's row's link."""
        await self.nav_link("Runs").click()
        row = self.page.locator(f"table[data-testid=runs-table] tr[data-run-id='{run_id}']")
        await row.get_by_role("link").first.click()
        await expect(self.page.locator("[data-testid=run-status]")).to_be_visible()

    def nav_link(self, name: str) -> Any:
        return self.page.get_by_role("navigation", name="Main").get_by_role(
            "link", name=name, exact=True
        )


class Tabs:
    """Opens tabs on the dashboard server; at the end of the test, fails if any of them sent
    a request to another host, raised an uncaught error or broke the CSP."""

    def __init__(self, browser: Any, server: Server, shots: Path) -> None:
        self.browser, self.server, self.shots = browser, server, shots
        self.opened: list[tuple[Any, Tab]] = []

    async def open(self, width: int = 1280, height: int = 900) -> Tab:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        origin = self.server.url
        # Nothing leaves the machine even if the page asks: other hosts are refused here,
        # and recorded below so that the test fails.
        await context.route(lambda url: not url.startswith(f"{origin}/"), _refuse)
        page = await context.new_page()
        tab = Tab(page, origin)

        def record(request: Any) -> None:
            tab.requests.append(request.url)
            tab.in_flight.append(request)
            authorization = request.headers.get("authorization")
            if authorization:
                tab.authorizations.append(authorization)

        def ended(request: Any) -> None:
            if request in tab.in_flight:
                tab.in_flight.remove(request)

        def console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                tab.csp_violations.append(message.text)

        context.on("request", record)
        context.on("requestfinished", ended)
        context.on("requestfailed", ended)
        page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
        page.on("console", console)
        self.opened.append((context, tab))
        return tab

    async def close(self, test_name: str, failed: bool) -> None:
        for number, (context, tab) in enumerate(self.opened):
            if failed:
                self.shots.mkdir(parents=True, exist_ok=True)
                shot = self.shots / f"{test_name}-{number}.png"
                await tab.page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failed test's tab: {shot}")
            await context.close()
        for _, tab in self.opened:
            assert tab.foreign_requests() == [], "requests to another host"
            assert tab.page_errors == [], "uncaught errors in the page"
            assert tab.csp_violations == [], "Content-Security-Policy violations"


async def _refuse(route: Any) -> None:
    await route.abort("blockedbyclient")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the test, so that `tabs` knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def tabs(browser: Any, dashboard_server: Server, request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tabs]:  # fmt: skip
    opened = Tabs(browser, dashboard_server, tmp_path_factory.getbasetemp() / "dashboard-shots")
    yield opened
    call = getattr(request.node, "report_call", None)
    await opened.close(request.node.name, failed=call is None or call.failed)


@pytest.fixture
async def tab(tabs: Tabs) -> Tab:
    """A 1280 px wide tab."""
    return await tabs.open()


class DashboardApi:
    """What the tests check the pages against: the server's API, called directly."""

    def __init__(self, server: Server) -> None:
        self.base = server.url

    async def login(self, email: str, password: str) -> str:
        async with httpx.AsyncClient(base_url=self.base) as client:
            answer = await client.post("/api/v1/auth/login",
                                       json={"email": email, "password": password})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])

    async def call(self, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a 429 (refused before the route ran) is waited out and sent again."""
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            for _ in range(RATE_LIMIT_RETRIES):
                answer = await client.request(
                    method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
                )
                if answer.status_code != 429:
                    break
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            return answer

    async def get(self, token: str, path: str, **kwargs: Any) -> Any:
        answer = await self.call(token, "GET", path, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def trigger(self, token: str, workflow: str, data: dict[str, Any],
                      wait: float = 30) -> dict[str, Any]:  # fmt: skip
        """Starts a run and waits up to `wait` seconds for it to end or to wait for someone."""
        answer = await self.call(token, "POST", "/api/v1/workflows/trigger",
                                 json={"workflow_name": workflow, "data": data})  # fmt: skip
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["workflow_id"]
        return await self.until_status(token, run_id, {"completed", "failed", "cancelled",
                                                       "waiting"}, wait)  # fmt: skip

    async def until_status(self, token: str, run_id: str, statuses: set[str],
                           timeout: float = 30) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = await self.get(token, f"/api/v1/workflows/{run_id}/status")
            if found["status"] in statuses:
                return found
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.5)  # within the rate limit's 1 request a second

    async def step_outputs(self, token: str, run_id: str) -> dict[str, Any]:
        """Each completed step's output, as the run's StepCompleted events record it."""
        events = await self.get(token, f"/api/v1/events/{run_id}", params={"limit": 200})
        return {event["data"]["step_id"]: event["data"]["output"] for event in events["items"]
                if event["event_type"] == "StepCompleted"}  # fmt: skip

    async def create_user(self, admin_token: str, email: str, role: str, password: str) -> None:
        user = {"email": email, "role": role, "password": password}
        answer = await self.call(admin_token, "POST", "/api/v1/users", json=user)
        assert answer.status_code == 201, answer.text

    async def create_api_key(self, admin_token: str, name: str, role: str) -> str:
        """A new API key's value: a principal (and rate-limit bucket) of its own."""
        key = {"name": name, "role": role, "expires_in_days": 1}
        answer = await self.call(admin_token, "POST", "/api/v1/auth/api-keys", json=key)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["key"])


@pytest.fixture
def dashboard_api(dashboard_server: Server) -> DashboardApi:
    return DashboardApi(dashboard_server)


@pytest.fixture(scope="session")
async def bootstrap_token(dashboard_server: Server) -> str:
    """The bootstrap admin's token: it creates each test's user and API key, nothing else."""
    return await DashboardApi(dashboard_server).login(*DASHBOARD_ADMIN)


def _unique(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:40].lower().replace('_', '-')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def admin_token(
    dashboard_api: DashboardApi, bootstrap_token: str, request: pytest.FixtureRequest
) -> str:
    """An admin API key of the test's own, for the API calls that set up and check its pages."""
    return await dashboard_api.create_api_key(bootstrap_token, _unique(request), "admin")


@pytest.fixture
async def dashboard_user(
    dashboard_api: DashboardApi, bootstrap_token: str, request: pytest.FixtureRequest
) -> tuple[str, str]:
    """(email, password) of an admin of the test's own, to sign in with."""
    email = f"{_unique(request)}@example.com"
    await dashboard_api.create_user(bootstrap_token, email, "admin", DASHBOARD_PASSWORD)
    return email, DASHBOARD_PASSWORD


def expect(target: Any) -> Any:
    """Playwright's auto-waiting `expect`, imported when used: a machine without Playwright
    still collects the browser tests, and skips them (see `browser`)."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)
