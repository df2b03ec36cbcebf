"""The registry's pure rules: status thresholds, TTLs, and which addresses may be reached."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from workflow_engine.net.addresses import NetworkPolicy, RefusedURL, http_url, parse_networks
from workflow_engine.registry.status import (
    ServiceStatus,
    Standing,
    Thresholds,
    after_check,
    after_heartbeat,
    has_expired,
)

RULES = Thresholds(healthy=2, unhealthy=3)


def _run(start: ServiceStatus, results: str) -> list[ServiceStatus]:
    standing, seen = Standing(start), []
    for result in results:
        standing = after_check(standing, result == "+", RULES)
        seen.append(standing.status)
    return seen


def test_the_first_result_decides_then_thresholds_hold() -> None:
    healthy, unhealthy = ServiceStatus.healthy, ServiceStatus.unhealthy
    assert _run(ServiceStatus.unknown, "+")[-1] is healthy
    assert _run(ServiceStatus.unknown, "-")[-1] is unhealthy
    assert _run(healthy, "--+---") == [healthy, healthy, healthy, healthy, healthy, unhealthy]
    assert _run(unhealthy, "+-++") == [unhealthy, unhealthy, unhealthy, healthy]


def test_an_expired_service_needs_a_sign_of_life() -> None:
    expired = ServiceStatus.expired
    assert _run(expired, "--")[-1] is expired
    assert _run(expired, "+")[-1] is ServiceStatus.healthy
    assert after_heartbeat(Standing(expired), health_checked=True).status is ServiceStatus.unknown
    assert after_heartbeat(Standing(expired), health_checked=False).status is ServiceStatus.healthy
    unhealthy = Standing(ServiceStatus.unhealthy, 0, 4)
    assert after_heartbeat(unhealthy, health_checked=True) == unhealthy  # checks decide health


def test_the_ttl_runs_from_the_last_sign_of_life() -> None:
    alive = datetime(2026, 11, 26, tzinfo=UTC)
    assert not has_expired(None, alive, alive + timedelta(days=365))
    assert not has_expired(30, alive, alive + timedelta(seconds=30))
    assert has_expired(30, alive, alive + timedelta(seconds=30.001))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "link-local or cloud metadata"),
        ("::ffff:169.254.169.254", "link-local or cloud metadata"),
        ("fe80::1", "link-local or cloud metadata"),
        ("fd00:ec2::254", "link-local or cloud metadata"),
        ("100.100.100.200", "link-local or cloud metadata"),
        ("10.1.2.3", "private or loopback"),
        ("192.168.1.1", "private or loopback"),
        ("::ffff:127.0.0.1", "private or loopback"),
        ("0.0.0.0", "private or loopback"),
        ("100.64.0.1", "private or loopback"),  # carrier-grade NAT
        ("2002:a9fe:a9fe::", "link-local or cloud metadata"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::", "private or loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local or cloud metadata"),  # NAT64
        ("::a9fe:a9fe", "link-local or cloud metadata"),  # IPv4-compatible
        ("fec0::1", "private or loopback"),  # site-local
        ("ff02::1", "private or loopback"),
    ],
)
def test_inside_addresses_are_refused_unless_allowed(address: str, reason: str) -> None:
    with pytest.raises(RefusedURL, match=reason):
        NetworkPolicy((), "REGISTRY_ALLOWED_NETWORKS").check("host", ipaddress.ip_address(address))


def test_allowed_networks_open_private_ranges_but_never_metadata() -> None:
    policy = NetworkPolicy(parse_networks(["10.0.0.0/8", "169.254.0.0/16", "::1"]))
    policy.check("svc", ipaddress.ip_address("10.9.8.7"))
    policy.check("svc", ipaddress.ip_address("::1"))
    policy.check("svc", ipaddress.ip_address("93.184.216.34"))  # public: always
    with pytest.raises(RefusedURL):
        policy.check("svc", ipaddress.ip_address("169.254.169.254"))
    with pytest.raises(RefusedURL):
        policy.check("svc", ipaddress.ip_address("192.168.0.1"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("http:///path", "no host"),
        ("https://user:secret@example.com/", "credentials"),
        ("http://[::1/", "not a URL"),
        ("http://xn--a.example/", "not a URL"),
        ("http://example.com:99999/", "not a TCP port"),
    ],
)
def test_only_plain_http_urls_pass(url: str, reason: str) -> None:
    with pytest.raises(RefusedURL, match=reason):
        http_url(url)


def test_networks_are_parsed_or_named_as_wrong() -> None:
    assert parse_networks([" 10.0.0.0/8 ", "10.1.2.3"]) == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.1.2.3/32"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="'ten' is not an IP network"):
        parse_networks(["ten"])
