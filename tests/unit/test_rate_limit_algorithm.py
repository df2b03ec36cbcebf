"""GCRA token buckets, the policy's bucket choice, and the client address behind proxies."""

from __future__ import annotations

import pytest

from workflow_engine.api.client_address import ClientAddresses
from workflow_engine.ratelimit.gcra import Bucket, Limit
from workflow_engine.ratelimit.policy import RateLimitPolicy
from workflow_engine.ratelimit.storage import MemoryStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_of_30_lets_exactly_the_bucket_through() -> None:
    clock = Clock()
    storage = MemoryStorage(clock)
    bucket = [Bucket("p:alice", Limit(per_minute=60, burst=10))]
    decisions = [await storage.acquire(bucket) for _ in range(30)]
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert [d.remaining for d in allowed] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    refused = decisions[10]
    assert refused.retry_after == pytest.approx(1.0)  # one token per second at 60/min
    assert refused.reset_after == pytest.approx(10.0)
    clock.now += 0.99
    assert not (await storage.acquire(bucket)).allowed
    clock.now += 0.02
    assert (await storage.acquire(bucket)).allowed
    clock.now += 60
    assert (await storage.acquire(bucket)).remaining == 9  # full again, never more


async def test_a_refusal_by_one_bucket_spends_nothing_from_the_others() -> None:
    clock = Clock()
    storage = MemoryStorage(clock)
    tenant = Bucket("t:acme", Limit(per_minute=60, burst=2))
    alice = [Bucket("p:alice", Limit(60, 10)), tenant]
    bob = [Bucket("p:bob", Limit(60, 10)), tenant]
    assert (await storage.acquire(alice)).allowed
    assert (await storage.acquire(bob)).allowed
    refused = await storage.acquire(alice)
    assert not refused.allowed
    assert refused.limit == 2  # the binding bucket is the tenant's
    clock.now += 1.0
    decision = await storage.acquire(alice)
    assert decision.allowed
    assert decision.remaining == 0  # the tenant bucket, not alice's 8 left


def test_policy_picks_endpoint_overrides_and_the_tenant_ceiling() -> None:
    policy = RateLimitPolicy(
        Limit(60, 10),
        tenant=Limit(600, 100),
        endpoints={"POST /api/v1/workflows/{id}/cancel": Limit(6, 2)},
    )
    cancel = policy.buckets("POST", f"/api/v1/workflows/{'a' * 36}/cancel", "user:1", "t1")
    assert [b.key for b in cancel] == [
        "ep:POST /api/v1/workflows/{id}/cancel:user:1",
        "t:t1",
    ]
    assert cancel[0].limit == Limit(6, 2)
    other = policy.buckets("GET", "/api/v1/workflows/abc/cancel", "user:1", None)
    assert [b.key for b in other] == ["p:user:1"]
    assert policy.exempt("/health/detailed")
    assert policy.exempt("/swagger-ui/swagger-ui.css")
    assert not policy.exempt("/api/v1/uptime")


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    clients = ClientAddresses(["10.0.0.0/8"])

    def scope(peer: str, forwarded: str | None) -> dict[str, object]:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return {"client": (peer, 1234), "headers": headers}

    assert clients.of(scope("10.1.1.1", "203.0.113.9")) == "203.0.113.9"
    # Left-most entries are the client's to forge: take the right-most untrusted hop.
    assert clients.of(scope("10.1.1.1", "6.6.6.6, 203.0.113.9, 10.2.2.2")) == "203.0.113.9"
    assert clients.of(scope("198.51.100.7", "203.0.113.9")) == "198.51.100.7"
    assert ClientAddresses([]).of(scope("10.1.1.1", "203.0.113.9")) == "10.1.1.1"
