"""`http.request`: one HTTP call with httpx, to hosts the configuration allows.

Arguments: `url`, `method` (GET), `headers`, `params`, `json`, `timeout` (seconds, 30). The
output is `{"status", "headers", "json"}` for a JSON answer or `{"status", "headers",
"text"}` otherwise. Hosts must match `HTTP_ALLOWED_HOSTS` (none by default: a workflow cannot
reach anything the operator did not name); link-local and metadata addresses are refused
always, private and loopback ones unless named exactly. Redirects are not followed (the next
host might not be allowed). The body is read up to `HTTP_MAX_RESPONSE_BYTES` and refused
beyond. A 429 or 5xx answer and network failures fail the attempt as retryable; any other
4xx, a disallowed host or an oversized answer fail the step at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where a URL is parsed or a request sent: a process that does neither never
    # loads httpx (docs/architecture.md, "What is loaded when").
    import httpx

from workflow_engine.net.addresses import (
    IPAddress,
    RefusedURL,
    is_internal,
    never_reachable,
    resolve,
)
from workflow_engine.nodes.registry import FatalStepError, NodeContext, StepError, node

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
TEXT_ENCODINGS = {
    "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252",
    "cp1252", "utf-16", "utf-16le", "utf-16be",
}  # fmt: skip
MAX_TIMEOUT = 300.0


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


@node("http.request")
async def http_request(
    ctx: NodeContext,
    *,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    import httpx

    target = _target(url, ctx.settings.http_allowed_hosts)
    address = await _check_addresses(target, ctx.settings.http_allowed_hosts)
    if headers is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FatalStepError("headers must map names to text values")
    verb = method.upper()
    if verb not in METHODS:
        raise FatalStepError(f"method {method!r} is not one of {', '.join(sorted(METHODS))}")
    limit = ctx.settings.http_max_response_bytes
    seconds = min(max(float(timeout), 0.1), MAX_TIMEOUT)
    try:
        # httpx's timeouts are per operation; the whole call gets `timeout` too, so a server
        # that trickles its answer cannot hold the step.
        async with (
            asyncio.timeout(seconds),
            httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client,
        ):
            # To the address checked, not to the name: resolving it again when connecting
            # would let a name that changes its answer (DNS rebinding) lead inside. The name
            # still goes in `Host` and in TLS (SNI, and the certificate is checked for it).
            request = client.build_request(
                verb, target.copy_with(host=str(address)), params=params, json=json,
                headers={**{k: v for k, v in (headers or {}).items() if k.lower() != "host"},
                         "Host": target.netloc.decode("ascii")},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )  # fmt: skip
            response = await client.send(request, stream=True)
            try:
                body = await _read_capped(response, limit)
            finally:
                await response.aclose()
    except httpx.LocalProtocolError:
        # Not echoed: the message quotes the offending header, which may hold a secret.
        raise FatalStepError(
            "the request could not be sent: a header name or value is malformed "
            "(a line break, or a character HTTP does not allow)"
        ) from None
    except (httpx.TimeoutException, TimeoutError):
        raise StepError(f"{verb} {target.host} timed out after {seconds:g} s",
                        error_class="timeout") from None  # fmt: skip
    except httpx.TransportError as exc:
        raise StepError(f"{verb} {target.host}: {type(exc).__name__}: {exc}",
                        error_class="connection") from None  # fmt: skip
    ctx.log.info(f"{verb} {target.host}{target.path} -> {response.status_code}",
                 bytes=len(body))  # fmt: skip
    _raise_for_status(response, verb, target)
    return _output(response, body)


async def _check_addresses(target: httpx.URL, allowed: tuple[str, ...]) -> IPAddress:
    """Refuse hosts that are, or resolve to, link-local or cloud metadata addresses (always),
    and private, loopback or reserved ones unless the host is named exactly in the allowlist
    (a wildcard never opens the inside of the network). Every address is checked; the first
    is the one to connect to."""
    host = target.host
    try:
        addresses = await resolve(target)
    except RefusedURL as exc:
        raise StepError(str(exc), error_class="dns") from None
    for address in addresses:
        if never_reachable(address):
            raise FatalStepError(f"host {host!r} is a link-local or metadata address ({address})")
        if is_internal(address) and not _named_exactly(host, allowed):
            raise FatalStepError(
                f"host {host!r} is a private address ({address}); name it exactly in "
                "HTTP_ALLOWED_HOSTS to allow it"
            )
    if not addresses:
        raise StepError(f"cannot resolve {host!r}: no address", error_class="dns")
    return addresses[0]


def _named_exactly(host: str, allowed: tuple[str, ...]) -> bool:
    return host.lower().rstrip(".") in {pattern.lower() for pattern in allowed}


def _target(url: str, allowed: tuple[str, ...]) -> httpx.URL:
    import httpx

    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FatalStepError(f"not a URL: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise FatalStepError("only http and https URLs with a host can be called")
    if target.userinfo:
        raise FatalStepError("credentials in the URL are refused; send them in headers")
    if not host_allowed(target.host, allowed):
        raise FatalStepError(
            f"host {target.host!r} is not in HTTP_ALLOWED_HOSTS"
            + ("" if allowed else " (empty: no host is allowed until the operator names some)")
        )
    return target


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received.extend(chunk)
        if len(received) > limit:
            raise FatalStepError(f"the response is larger than {limit} bytes")
    return bytes(received)


def _raise_for_status(response: httpx.Response, verb: str, target: httpx.URL) -> None:
    status = response.status_code
    if status < 400:
        if 300 <= status < 400:
            raise FatalStepError(f"{verb} {target.host} redirected ({status}); redirects are "
                                 "not followed: call the final URL")  # fmt: skip
        return
    message = f"{verb} {target.host}{target.path} answered {status}"
    if status == 429 or status >= 500:
        raise StepError(message, error_class=f"http_{status}")
    raise FatalStepError(message, error_class=f"http_{status}")


def _output(response: httpx.Response, body: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items()},
    }
    if "json" in response.headers.get("content-type", ""):
        try:
            result["json"] = json.loads(body)
            return result
        except ValueError:
            pass
    charset = (response.charset_encoding or "utf-8").lower()
    # Only plain text encodings: a server naming another codec (punycode, zlib_codec) could
    # make decoding slow or fail.
    encoding = charset if charset in TEXT_ENCODINGS else "utf-8"
    result["text"] = body.decode(encoding, errors="replace")
    return result
