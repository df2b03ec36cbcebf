"""One health probe: an HTTP GET that cannot be turned against the inside of the network.

The host is resolved at probe time (not trusted from registration), every address it gives
is checked against the network policy, and the connection goes to the checked address
itself — the `Host` header and TLS server name carry the original name — so a DNS answer
that changes between the check and the connect (DNS rebinding) cannot redirect the probe.
Redirects are never followed, and at most `MAX_BODY_BYTES` of the answer are read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where a URL is parsed or a request sent: a process that does neither never
    # loads httpx (docs/architecture.md, "What is loaded when").
    import httpx

from workflow_engine.net.addresses import NetworkPolicy, RefusedURL, http_url, without_credentials
from workflow_engine.observability import tracing
from workflow_engine.version import __version__

MAX_BODY_BYTES = 64 * 1024


def checker_id(host: str, pid: int) -> str:
    """An opaque name for a probing process: stable, so a service's owner can tell the
    probes of one process from another's, without learning our host names."""
    return hashlib.sha256(f"{host}:{pid}".encode()).hexdigest()[:12]


def user_agent() -> str:
    return (
        f"workflow-engine-registry/{__version__} ({checker_id(socket.gethostname(), os.getpid())})"
    )


def new_client() -> httpx.AsyncClient:
    """A client for probes. No kept-alive connections: the pool would hand a probe of
    `https://b.example` a connection verified for `a.example` at the same address."""
    import httpx

    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    redirect_to: str | None = None

    @property
    def summary(self) -> str:
        return "health check passed" if self.passed else f"health check failed: {self.error}"


async def probe(
    client: httpx.AsyncClient, url: str, policy: NetworkPolicy, timeout: float
) -> ProbeResult:
    """GET `url` within `timeout` seconds; passed when it answers 2xx."""
    import httpx

    started = time.perf_counter()

    def result(**fields: object) -> ProbeResult:
        latency = round((time.perf_counter() - started) * 1000, 3)
        return ProbeResult(latency_ms=latency, **fields)  # type: ignore[arg-type]

    try:
        # Untraced: probes run on a timer, to services tenants registered.
        with tracing.untraced():
            async with asyncio.timeout(timeout):
                target = http_url(url)
                address = (await policy.addresses(target))[0]
                request = client.build_request(
                    "GET",
                    target.copy_with(host=str(address)),
                    headers={"Host": target.netloc.decode("ascii"), "User-Agent": user_agent()},
                    extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
                    timeout=timeout,
                )
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    await _drain(response)
                finally:
                    await response.aclose()
    except RefusedURL as exc:
        return result(passed=False, error=str(exc))
    except TimeoutError:
        return result(passed=False, error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return result(passed=False, error=f"{type(exc).__name__}: {exc}" if str(exc)
                      else type(exc).__name__)  # fmt: skip
    except Exception as exc:  # a socket-level oddity must fail this probe, not the round
        return result(passed=False, error=f"the probe failed: {type(exc).__name__}")
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        error = (
            f"redirected ({status}) to {without_credentials(location)!r}; "
            "redirects are not followed"
        )
        return result(passed=False, status_code=status, redirect_to=location or None, error=error)
    if 200 <= status < 300:
        return result(passed=True, status_code=status)
    return result(passed=False, status_code=status, error=f"answered {status}")


async def _drain(response: httpx.Response) -> None:
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received >= MAX_BODY_BYTES:
            return  # the status says enough; a huge body is not read
