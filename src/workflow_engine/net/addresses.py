"""Which addresses the server may reach when a client names a URL (SSRF guard).

Two kinds of caller share these rules: `http.request` steps (hosts named in an allowlist)
and the service registry (networks named in `REGISTRY_ALLOWED_NETWORKS`). Both refuse, always,
link-local addresses (169.254.0.0/16 holds the cloud metadata service) and the metadata
addresses outside it; both treat private, loopback and other non-public addresses as the
inside of the network, reachable only when the operator opened them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where a URL is parsed or a request sent: a process that does neither never
    # loads httpx (docs/architecture.md, "What is loaded when").
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata endpoints outside the link-local ranges.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)
# IPv6 prefixes whose addresses carry an IPv4 address a gateway may reach for them.
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, yet not "private" to Python


class RefusedURL(ValueError):
    """The URL or an address it leads to may not be reached. The message says why."""


def _views(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address it carries: `::ffff:169.254.169.254`, 6to4
    (`2002:a9fe:a9fe::`), NAT64 (`64:ff9b::a9fe:a9fe`), IPv4-compatible and Teredo forms
    all lead to the IPv4 address, and are judged as it too."""
    views: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            views.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            views.append(address.sixtofour)
        if address.teredo is not None:
            views.extend(address.teredo)
        if any(address in prefix for prefix in NAT64) or address in IPV4_COMPATIBLE:
            views.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return views


def never_reachable(address: IPAddress) -> bool:
    """Link-local and metadata addresses: refused whatever the configuration says."""
    return any(view.is_link_local or view in METADATA_ADDRESSES for view in _views(address))


def is_internal(address: IPAddress) -> bool:
    """Anything but a public unicast address: private, loopback, carrier-grade NAT
    (100.64.0.0/10), reserved, multicast, unspecified, site-local."""
    return any(
        not view.is_global or view.is_multicast or view in SITE_LOCAL for view in _views(address)
    )


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR blocks (`10.0.0.0/8`) or single addresses; raises ValueError naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP network (use CIDR, e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def http_url(url: str) -> httpx.URL:
    """`url` parsed, if it is an http(s) URL with a host and no credentials."""
    import httpx

    try:
        parsed = httpx.URL(url)
        host, port = parsed.host, parsed.port  # decoding an IDNA host may fail here
    except (httpx.InvalidURL, TypeError, ValueError) as exc:  # UnicodeError is a ValueError
        raise RefusedURL(f"not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise RefusedURL("only http and https URLs are accepted")
    if not host:
        raise RefusedURL("the URL has no host")
    if parsed.userinfo:
        raise RefusedURL("credentials in the URL are refused")
    if port is not None and not 0 < port < 65536:
        raise RefusedURL(f"port {port} is not a TCP port")
    return parsed


def without_credentials(url: str) -> str:
    """`url` safe to quote back: any user and password it carries are dropped."""
    import httpx

    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(a URL that does not parse)"


async def resolve(url: httpx.URL) -> list[IPAddress]:
    """The addresses `url`'s host stands for (the host itself when it is an address)."""
    host = url.host
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedURL(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    except ValueError:  # a label too long or empty for IDNA (UnicodeError)
        raise RefusedURL(f"cannot resolve {host!r}: not a valid host name") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class NetworkPolicy:
    """Addresses are reachable when public, or internal but inside an allowed network."""

    def __init__(self, allowed: Iterable[IPNetwork] = (), setting: str = "") -> None:
        self.allowed = tuple(allowed)
        self._setting = setting

    def check(self, host: str, address: IPAddress) -> None:
        plain = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped  # ::ffff:10.1.2.3 is inside 10.0.0.0/8
        if never_reachable(address):
            raise RefusedURL(f"{host!r} is a link-local or cloud metadata address ({plain})")
        if is_internal(address) and not any(plain in network for network in self.allowed):
            where = f"; add its network to {self._setting} to allow it" if self._setting else ""
            raise RefusedURL(f"{host!r} is a private or loopback address ({plain}){where}")

    async def addresses(self, url: httpx.URL) -> list[IPAddress]:
        """`url`'s addresses, resolved now, each checked; raises RefusedURL on the first
        address that may not be reached (a name must not hide one bad answer among good)."""
        found = await resolve(url)
        for address in found:
            self.check(url.host, address)
        return found
