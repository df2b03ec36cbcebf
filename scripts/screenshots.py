#!/usr/bin/env python3
"""Screenshots of the dashboard (`make screenshots`): a server of its own from .venv, Debian's
Chromium driven by Playwright, and `customer_support` run to completion from its form.

    .venv/bin/python scripts/screenshots.py

Writes screenshots/{run,template,services,run-390}.png (ignored by git) and the README's
image, docs/images/dashboard-run.png (the run at 1280 px, reduced to at most 200 KB).
Playwright never downloads a browser here: it drives /usr/bin/chromium (`apt-get install
chromium`).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"
README_IMAGE = ROOT / "docs" / "images" / "dashboard-run.png"
README_IMAGE_LIMIT = 200_000  # bytes: the image is committed
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN = ("admin@example.com", "a long screenshot passphrase")
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium (Playwright downloads none)")
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as work, serving(Path(work)) as base:
        register_demo_services(base, login(base))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                readme_shot = shoot_wide(browser, base)
                shoot_narrow(browser, base)
            except Exception:
                keep_failed_pages(browser)
                raise
            finally:
                browser.close()
    write_readme_image(readme_shot)
    for path in [*sorted(OUT.glob("*.png")), README_IMAGE]:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KB")


def shoot_wide(browser: Any, base: str) -> bytes:
    """The template page, a run of it started from its form, and the services; returns the
    run's screenshot (the viewport only) for the README."""
    page = open_signed_in(browser, base, WIDE)
    nav(page, "Templates")
    row = page.locator("table[data-testid=templates-table] tr[data-template=customer_support]")
    row.get_by_role("link").first.click()
    page.locator("svg[data-testid=template-graph]").wait_for()
    settled(page)
    page.screenshot(path=OUT / "template.png", full_page=True)

    page.locator("form[data-testid=trigger-form]").get_by_role("button", name="Start run").click()
    page.locator("[data-testid=run-status][data-status=completed]").wait_for()
    page.locator("svg[data-testid=run-graph] g.node[data-step=draft]").click()
    page.locator("[data-testid=step-output]").wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    settled(page)
    page.screenshot(path=OUT / "run.png", full_page=True)
    readme_shot: bytes = page.screenshot()

    nav(page, "Services")
    page.locator("table[data-testid=services-table] tr[data-service-id]").first.wait_for()
    page.locator("svg[data-testid=latency-history]").first.wait_for()
    page.wait_for_function(  # every service's history drawn, not "loading…"
        "() => !document.querySelector('[data-testid=services-table]')"
        ".textContent.includes('loading')"
    )
    settled(page)
    page.screenshot(path=OUT / "services.png", full_page=True)
    page.context.close()
    return readme_shot


def settled(page: Any) -> None:
    """Wait until no request waits for the rate limit, so no shot shows that notice."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=rate-limit-status]')?.textContent.trim()"
    )


def shoot_narrow(browser: Any, base: str) -> None:
    """The run at phone width, reached from the runs page."""
    page = open_signed_in(browser, base, NARROW)
    rows = page.locator("table[data-testid=runs-table] tr[data-run-id]")
    rows.first.get_by_role("link").first.click()
    page.locator("[data-testid=run-status][data-status=completed]").wait_for()
    page.locator("svg[data-testid=run-graph] g.node").first.wait_for()
    settled(page)
    page.screenshot(path=OUT / "run-390.png", full_page=True)
    page.context.close()


def keep_failed_pages(browser: Any) -> None:
    """What the pages showed when the script failed: screenshots/failed-N.png."""
    pages = [page for context in browser.contexts for page in context.pages]
    for number, page in enumerate(pages):
        path = OUT / f"failed-{number}.png"
        page.screenshot(path=path, full_page=True)
        print(f"the page when it failed: {path.relative_to(ROOT)}", file=sys.stderr)


def open_signed_in(browser: Any, base: str, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    # The dashboard asks nothing of another host; refuse anything else anyway.
    context.route(lambda url: not url.startswith(f"{base}/"), lambda route: route.abort())
    page = context.new_page()
    page.goto(f"{base}/ui/")
    form = page.locator("form[data-testid=sign-in]")
    form.locator("input[name=email]").fill(ADMIN[0])
    form.locator("input[name=password]").fill(ADMIN[1])
    form.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


def nav(page: Any, name: str) -> None:
    main_nav = page.get_by_role("navigation", name="Main")
    main_nav.get_by_role("link", name=name, exact=True).click()


def write_readme_image(png: bytes) -> None:
    """The README's screenshot, as small as a palette PNG makes it (no other format: the
    README shows it on any forge)."""
    from PIL import Image

    README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64, 32):
        buffer = io.BytesIO()
        image.quantize(colours, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= README_IMAGE_LIMIT:
            README_IMAGE.write_bytes(buffer.getvalue())
            return
    sys.exit(f"the README image stays above {README_IMAGE_LIMIT} bytes even with 32 colours")


# --- a server of the script's own ---------------------------------------------------------


@contextmanager
def serving(work: Path) -> Iterator[str]:
    """`workflow-engine serve` from .venv on a free port, with an empty data directory; yields
    its base URL and stops it (SIGTERM) after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    email, password = ADMIN
    env = dict(
        own_environment(), DATA_DIR=str(work / "data"), PORT=str(port),
        BOOTSTRAP_ADMIN_EMAIL=email, BOOTSTRAP_ADMIN_PASSWORD=password,
        REGISTRY_CHECK_INTERVAL_SECONDS="1",  # a latency history within seconds
    )  # fmt: skip
    log_path = work / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "workflow-engine"), "serve"], cwd=work, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, server, log_path)
        yield base
    finally:
        server.terminate()
        server.wait(30)


def own_environment() -> dict[str, str]:
    """This environment without the server's settings, so a developer's DATABASE_URL or
    config file never points the screenshots at their data."""
    from workflow_engine.config import Settings

    ours = {name.upper() for name in Settings.model_fields} | {"CONFIG_FILE"}
    return {k: v for k, v in os.environ.items() if k.upper() not in ours}


def wait_until_healthy(base: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server was not healthy within 60 s:\n{log_path.read_text()}")


def call(base: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(f"{base}{path}", json=body, headers=headers, timeout=30)
    if answer.is_error:
        sys.exit(f"POST {path}: {answer.status_code} {answer.text}")
    return answer.json()


def login(base: str) -> str:
    email, password = ADMIN
    return str(call(base, "/api/v1/auth/login", {"email": email, "password": password})["token"])


def register_demo_services(base: str, token: str) -> None:
    """The demo MCP services the server mounts, checked through its own /health, and one
    whose checks fail: a services page with something on it."""
    for name in ("helpscout", "notion", "slack"):
        call(base, "/api/v1/registry/register", {
            "service_name": f"demo-{name}", "service_url": f"{base}/demo/mcp/{name}/",
            "health_check_url": f"{base}/health", "metadata": {"demo": True},
            "tags": ["demo", "mcp"],
        }, token)  # fmt: skip
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    call(base, "/api/v1/registry/register", {
        "service_name": "billing-api", "service_url": f"http://127.0.0.1:{closed}",
        "health_check_url": f"http://127.0.0.1:{closed}/health", "tags": ["internal"],
    }, token)  # fmt: skip


if __name__ == "__main__":
    main()
