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

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata endpoints outside the link-local ranges.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class RefusedURL(ValueError):
    """The URL or an address it leads to may not be reached. The message says why."""


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:169.254.169.254 reaches the IPv4 address; judge it as that.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def never_reachable(address: IPAddress) -> bool:
    """Link-local and metadata addresses: refused whatever the configuration says."""
    address = _unmapped(address)
    return address.is_link_local or address in METADATA_ADDRESSES


def is_internal(address: IPAddress) -> bool:
    """Private, loopback, reserved, multicast or unspecified: not the public internet."""
    address = _unmapped(address)
    return (
        address.is_private
        or address.is_loopback
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
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
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise RefusedURL(f"not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise RefusedURL("only http and https URLs are accepted")
    if not parsed.host:
        raise RefusedURL("the URL has no host")
    if parsed.userinfo:
        raise RefusedURL("credentials in the URL are refused")
    return parsed


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
        plain = _unmapped(address)
        if never_reachable(plain):
            raise RefusedURL(f"{host!r} is a link-local or cloud metadata address ({plain})")
        if is_internal(plain) and not any(plain in network for network in self.allowed):
            where = f"; add its network to {self._setting} to allow it" if self._setting else ""
            raise RefusedURL(f"{host!r} is a private or loopback address ({plain}){where}")

    async def addresses(self, url: httpx.URL) -> list[IPAddress]:
        """`url`'s addresses, resolved now, each checked; raises RefusedURL on the first
        address that may not be reached (a name must not hide one bad answer among good)."""
        found = await resolve(url)
        for address in found:
            self.check(url.host, address)
        return found
