"""The client's address: the connection's peer, or what a trusted proxy says it forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """Believes `X-Forwarded-For` only from `TRUSTED_PROXIES`, and then takes the right-most
    address that is not itself a trusted proxy (anything left of it the client could forge)."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted: list[Network] = [
            ipaddress.ip_network(net, strict=False) for net in trusted_proxies
        ]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer: str | None = str(client[0]) if client else None
        if peer is None or not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded: list[str] = [
            bytes(value).decode("latin-1")
            for name, value in scope.get("headers", [])
            if name == b"x-forwarded-for"
        ]
        hops: list[str] = [
            hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()
        ]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop[:64]
        return peer
