"""How much the rate limiter adds to a request.

    .venv/bin/python bench/rate_limit.py [--redis redis://127.0.0.1:6379/15]
        [--concurrency 16] [--seconds 5]

Measures `RateLimiter.check` (policy + storage, two buckets: principal and tenant) with the
in-memory storage, and with Redis when a URL is given — the work the middleware does per
request besides reading headers. Two tables:

1. one check at a time: latency per call (p50, p99), checks spread over `--principals`;
2. with Redis, `--concurrency` checks always in flight, as a loaded server has them: checks
   per second and latency, for one busy principal and for `--principals` of them, with one
   Redis call per check (what the Redis storage did before batching and leases), with the
   checks of one event-loop turn batched into one call but no leases (every check decided in
   Redis), and with batching and leases (the storage as configured).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Callable

from workflow_engine.ratelimit.gcra import Bucket, Decision, Limit
from workflow_engine.ratelimit.leases import LeaseBook
from workflow_engine.ratelimit.limiter import RateLimiter
from workflow_engine.ratelimit.policy import RateLimitPolicy
from workflow_engine.ratelimit.redis_gcra import Ask, RedisBuckets
from workflow_engine.ratelimit.storage import MemoryStorage, RateLimitStorage, RedisStorage

PREFIX = "bench:ratelimit:"


class OneCallPerCheck:
    """The Redis storage without batching or leases: one script call per check."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url)
        self._buckets = RedisBuckets(self._client, PREFIX)

    async def acquire(self, buckets: list[Bucket]) -> Decision:
        (verdict,) = await self._buckets.decide([Ask(buckets, [1] * len(buckets))])
        return Decision(verdict.allowed, 0, 0, 0.0, verdict.retry_after)

    async def close(self) -> None:
        await self._client.aclose()

    async def ping(self) -> None:
        await self._client.ping()


def limiter(storage: RateLimitStorage) -> RateLimiter:
    policy = RateLimitPolicy(Limit(10**9, 10**9), tenant=Limit(10**9, 10**9), endpoints={})
    return RateLimiter(policy, storage, fail_open=True)


async def one_at_a_time(storage: RateLimitStorage, calls: int, principals: int) -> list[float]:
    checker = limiter(storage)
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await checker.check("GET", "/api/v1/uptime", f"user:{i % principals}", "tenant-1")
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def in_flight(
    storage: RateLimitStorage, concurrency: int, seconds: float, principals: int
) -> tuple[float, list[float]]:
    """Checks per second and latencies (µs) with `concurrency` checks always in flight."""
    checker = limiter(storage)
    samples: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(first: int) -> None:
        i = first
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await checker.check("GET", "/api/v1/uptime", f"user:{i % principals}", "tenant-1")
            samples.append((time.perf_counter() - started) * 1e6)
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(client(first) for first in range(concurrency)))
    return len(samples) / (time.perf_counter() - began), samples


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def redis_storages(url: str) -> dict[str, Callable[[], RateLimitStorage]]:
    return {
        "redis, one call per check": lambda: OneCallPerCheck(url),
        "redis, batched, no leases": lambda: RedisStorage(
            url, prefix=PREFIX, leases=LeaseBook(largest=1)
        ),
        "redis, batched and leased": lambda: RedisStorage(url, prefix=PREFIX),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--principals", type=int, default=1_000)
    parser.add_argument("--redis", help="also measure Redis storage at this URL")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}\n")
    print("| storage | calls | p50 per check | p99 per check |")
    print("|---|---|---|---|")
    p50, p99 = percentiles(await one_at_a_time(MemoryStorage(), args.calls, args.principals))
    print(f"| memory | {args.calls} | {p50:.1f} µs | {p99:.1f} µs |")
    if not args.redis:
        return
    calls = args.calls // 20
    for name, make in redis_storages(args.redis).items():
        storage = make()
        try:
            p50, p99 = percentiles(await one_at_a_time(storage, calls, args.principals))
        finally:
            await storage.close()
        print(f"| {name} (loopback) | {calls} | {p50:.1f} µs | {p99:.1f} µs |")

    print(f"\n{args.concurrency} checks in flight, {args.seconds:g} s each\n")
    print("| storage | principals | checks/s | p50 | p99 |\n|---|---|---|---|---|")
    for principals in (1, args.principals):
        for name, make in redis_storages(args.redis).items():
            storage = make()
            try:
                rate, samples = await in_flight(storage, args.concurrency, args.seconds, principals)
            finally:
                await storage.close()
            p50, p99 = percentiles(samples)
            print(f"| {name} | {principals:,} | {rate:,.0f} | {p50:.0f} µs | {p99:.0f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
