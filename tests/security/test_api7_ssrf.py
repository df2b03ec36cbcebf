"""API7, server-side request forgery: the URLs clients name never reach the inside.

Three doors: the service registry (URLs registered by clients, probed by the server), the
`http.request` node (URLs built from a run's input), and the MCP servers found through the
registry (the client's connections pinned to checked addresses). Each is tried with
loopback, link-local and metadata addresses, private ranges, IPv6 forms that carry an IPv4
address, numeric spellings a resolver reads as addresses, redirects to the inside, and DNS
rebinding: a name that resolves to a public address when checked and to 127.0.0.1 when
connected. The resolver is the operating system's `getaddrinfo`, replaced for one made-up
name only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import own_database
from tests.integration.conftest import Accounts, finished_run, running, trigger_run
from tests.security.conftest import bearer, build_app
from workflow_engine.auth.permissions import Role

SECRET = "internal-only-answer"

INSIDE = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://localhost/",
    "http://0.0.0.0/",
    "http://0/",
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://0x7f000001/",
    "http://0177.0.0.1/",  # octal
    "http://017700000001/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",  # 169.254.169.254 in decimal
    "http://0xa9fea9fe/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::]/",  # 6to4
    "http://[fe80::1]/",
    "http://100.100.100.200/",  # Alibaba's metadata service
    "http://[fd00:ec2::254]/",  # AWS's, over IPv6
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fc00::1]/",
    "http://[fec0::1]/",  # site-local
    "http://224.0.0.1/",
    "http://255.255.255.255/",
]
NOT_HTTP = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://example.com/",
    "http://user:hunter2-secret@example.com/",
    "http:///nohost",
    "//127.0.0.1/",
]


class Recorder(BaseHTTPRequestHandler):
    """An internal service: records every request it gets."""

    hits: list[str] = []

    def do_GET(self) -> None:
        Recorder.hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def inside() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def rebinding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`rebind.example.com` answers a public address the first times it is asked (once, or as
    often as the test's `public_answers` says: one per check the server makes before it
    connects) and 127.0.0.1 after (a short-TTL DNS record an attacker controls);
    `service.internal.test` is an internal service's name (127.0.0.1); every other name
    resolves as usual."""
    real = socket.getaddrinfo
    asked: list[str] = []
    public_answers = getattr(request, "param", 1)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name == "service.internal.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port or 80)))]
        if name != "rebind.example.com":
            return real(host, port, *args, **kwargs)
        address = "93.184.216.34" if len(asked) < public_answers else "127.0.0.1"
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


# --- the registry ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def registry(
    backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An app whose registry may reach one private network that none of the URLs is in (the
    production posture; development's default opens loopback)."""
    directory: Path = tmp_path_factory.mktemp("registry")
    async with own_database(backend_url, directory) as url:
        app = build_app(url, directory, REGISTRY_ALLOWED_NETWORKS="10.99.0.0/16",
                        REGISTRY_CHECK_INTERVAL_SECONDS="0.2",
                        REGISTRY_CHECK_TIMEOUT_SECONDS="1")  # fmt: skip
        async with running(app) as http:
            yield http, bearer(await Accounts(app, http).token(Role.service))


@pytest.mark.parametrize("url", INSIDE + NOT_HTTP)
async def test_the_registry_refuses_internal_urls(
    registry: tuple[httpx.AsyncClient, dict[str, str]], url: str
) -> None:
    client, headers = registry
    for field in ("service_url", "health_check_url"):
        body: dict[str, Any] = {"service_name": "probe", "service_url": "http://93.184.216.34/",
                                "ttl_seconds": 60}  # fmt: skip
        body[field] = url
        response = await client.post("/api/v1/registry/register", headers=headers, json=body)
        assert response.status_code == 422, (field, url, response.status_code, response.text)
        assert "hunter2" not in response.text
        assert any(field in str(error["loc"]) for error in response.json().get("errors", [])) or (
            field in response.json()["detail"]
        ), response.text


# Registration checks both URLs; the probe checks again, then connects.
@pytest.mark.parametrize("rebinding", [3], indirect=True)
async def test_registry_probes_connect_to_the_address_they_checked(
    registry: tuple[httpx.AsyncClient, dict[str, str]], inside: int, rebinding: list[str]
) -> None:
    client, headers = registry
    Recorder.hits.clear()
    url = f"http://rebind.example.com:{inside}/health"
    response = await client.post(
        "/api/v1/registry/register",
        headers=headers,
        json={"service_name": "rebinder", "service_url": url, "health_check_url": url},
    )
    assert response.status_code == 201, response.text
    service = response.json()["id"]
    async with _deadline(10):
        while (await client.get(f"/api/v1/registry/services/{service}",
                                headers=headers)).json()["last_check"] is None:  # fmt: skip
            await _sleep()
    # Checked three times as public; the probe connected to what it checked, without asking
    # again (the next answer would have been 127.0.0.1), so the inside was never reached.
    assert rebinding[:3] == ["93.184.216.34"] * 3
    assert Recorder.hits == []


# --- the http.request node ---------------------------------------------------------------------


def _fetch(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"id": "call", "uses": "http.request",
                   "with": {"url": url, "timeout": 2}}],
        "output": "{{ steps.call.output }}",
    }  # fmt: skip


@pytest.fixture(scope="module")
async def fetcher(
    backend_url: str, tmp_path_factory: pytest.TempPathFactory, inside: int
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A workflow whose URL comes from the run's input, allowed to call any host (a wildcard
    never opens internal addresses) and one internal service named exactly."""
    directory: Path = tmp_path_factory.mktemp("fetcher")
    workflows = [_fetch("fetch", "{{ input.url }}")]
    async with own_database(backend_url, directory) as url:
        app = build_app(url, directory, workflows=workflows,
                        HTTP_ALLOWED_HOSTS="*,service.internal.test")  # fmt: skip
        async with running(app) as http:
            yield http, bearer(await Accounts(app, http).token(Role.operator))


async def _fetch_run(
    client: httpx.AsyncClient, headers: dict[str, str], url: str
) -> dict[str, Any]:
    run = await trigger_run(client, headers, "fetch", {"url": url})
    return await finished_run(client, headers, run["workflow_id"])


@pytest.mark.parametrize("url", INSIDE)
async def test_http_steps_refuse_internal_addresses(
    fetcher: tuple[httpx.AsyncClient, dict[str, str]], inside: int, url: str
) -> None:
    client, headers = fetcher
    Recorder.hits.clear()
    # On the internal service's port: were the address let through, it would answer.
    with contextlib.suppress(httpx.InvalidURL):  # a spelling httpx does not parse goes as is
        url = str(httpx.URL(url).copy_with(port=inside))
    status = await _fetch_run(client, headers, url)
    assert status["status"] == "failed", status
    assert SECRET not in str(status)
    assert Recorder.hits == []


@pytest.mark.parametrize(
    "to", ["http://127.0.0.1:{port}/secret", "http://169.254.169.254/latest/meta-data/"]
)
async def test_http_steps_do_not_follow_redirects(
    fetcher: tuple[httpx.AsyncClient, dict[str, str]], inside: int, rebinding: list[str], to: str
) -> None:
    """A service the operator allowed answers with a redirect elsewhere: the step ends with
    the redirect, and its target is never asked."""
    client, headers = fetcher
    Recorder.hits.clear()
    first = f"/redirect?to={to.format(port=inside)}"
    status = await _fetch_run(client, headers, f"http://service.internal.test:{inside}{first}")
    assert Recorder.hits == [first], status["steps"]
    assert SECRET not in str(status)
    assert status["status"] == "failed" or status["output"]["status"] == 302, status


async def test_http_steps_connect_to_the_address_they_checked(
    fetcher: tuple[httpx.AsyncClient, dict[str, str]], inside: int, rebinding: list[str]
) -> None:
    client, headers = fetcher
    Recorder.hits.clear()
    status = await _fetch_run(client, headers, f"http://rebind.example.com:{inside}/secret")
    assert SECRET not in str(status), status
    assert Recorder.hits == [], "the step reached 127.0.0.1 through a name checked as public"
    assert rebinding[0] == "93.184.216.34"


# --- MCP servers found through the registry -----------------------------------------------------


class Named(BaseHTTPRequestHandler):
    """Answers with the name of the server it belongs to, and counts its requests."""

    def do_GET(self) -> None:
        name: str = self.server.name  # type: ignore[attr-defined]
        self.server.hits += 1  # type: ignore[attr-defined]
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return None


def _serve(address: str, port: int, name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), Named)
    server.name, server.hits = name, 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def two_hosts() -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    """One port on two loopback addresses: 127.0.0.2, the registered MCP server's (allowed),
    and 127.0.0.1, the inside."""
    for _ in range(20):
        allowed = _serve("127.0.0.2", 0, "registered")
        try:
            inside_server = _serve("127.0.0.1", allowed.server_address[1], "inside")
        except OSError:  # the port is taken on 127.0.0.1: another
            allowed.shutdown()
            continue
        yield allowed, inside_server
        allowed.shutdown()
        inside_server.shutdown()
        return
    pytest.fail("no port free on both loopback addresses")


async def test_mcp_connections_go_to_the_address_they_checked(
    two_hosts: tuple[ThreadingHTTPServer, ThreadingHTTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MCP client's transport for registered servers (`net/pinning.py`): the name answers
    the allowed address when checked and the inside after; the request reaches the address
    checked, and a later request, checked again, is refused."""
    import httpx2

    from workflow_engine.net.addresses import NetworkPolicy, parse_networks
    from workflow_engine.net.pinning import pinning_transport

    allowed, inside_server = two_hosts
    port = allowed.server_address[1]
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mcp.rebind.test":
            return real(host, service, *args, **kwargs)
        answer = "127.0.0.2" if not asked else "127.0.0.1"
        asked.append(answer)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, int(service)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    policy = NetworkPolicy(parse_networks(["127.0.0.2/32"]), "REGISTRY_ALLOWED_NETWORKS")
    url = f"http://mcp.rebind.test:{port}/mcp"
    async with httpx2.AsyncClient(transport=pinning_transport(httpx2, policy)) as client:
        first = await client.get(url)
        assert (first.status_code, first.text) == (200, "registered")
        with pytest.raises(httpx2.ConnectError, match="private or loopback address"):
            await client.get(url)

    assert asked == ["127.0.0.2", "127.0.0.1"]  # resolved once per request, by the check
    assert inside_server.hits == 0  # type: ignore[attr-defined]
    assert allowed.hits == 1  # type: ignore[attr-defined]


def test_the_internal_list_is_internal() -> None:
    """The addresses above are what their comments say (a typo would test nothing)."""
    for url in INSIDE:
        try:
            address = ipaddress.ip_address(httpx.URL(url).host)
        except (ValueError, httpx.InvalidURL):
            continue
        carriers = ("64:ff9b::/96", "2002::/16", "fec0::/10")  # judged by what they carry
        assert (
            not address.is_global
            or address.is_multicast
            or any(address in ipaddress.ip_network(net) for net in carriers)
        ), url


def _deadline(seconds: float) -> Any:
    import asyncio

    return asyncio.timeout(seconds)


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)
