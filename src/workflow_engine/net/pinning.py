"""HTTP clients that connect to the address they checked, not to a name resolved again.

A URL a tenant gave (a registered MCP server) is checked against the network policy when it
is looked up, but a client that resolved the name again when connecting could be sent
elsewhere by a DNS answer that changed in between (DNS rebinding). This transport resolves
and checks every request's host itself, right before sending it, and connects to the first
checked address; the name still goes in `Host` and in TLS (SNI, and the certificate is
checked against it). Redirects, if the client follows them, pass through it too.

One client per server: its pool keys connections by address, and must not hand a request for
one name a TLS connection verified for another name at the same address.
"""

from __future__ import annotations

from typing import Any

from workflow_engine.net.addresses import NetworkPolicy, RefusedURL


def pinning_transport(httpx_module: Any, policy: NetworkPolicy) -> Any:
    """An async transport of `httpx_module` (httpx, or httpx2, which the MCP SDK uses) that
    sends each request to an address of its host that `policy` allows."""

    class PinningTransport(httpx_module.AsyncBaseTransport):  # type: ignore[misc]
        def __init__(self) -> None:
            self._inner = httpx_module.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            target = request.url
            try:
                address = (await policy.addresses(target))[0]
            except (RefusedURL, OSError, IndexError) as exc:
                raise httpx_module.ConnectError(str(exc) or "no address", request=request) from exc
            request.url = target.copy_with(host=str(address))
            request.headers["Host"] = target.netloc.decode("ascii")
            if target.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": target.host}
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return PinningTransport()
