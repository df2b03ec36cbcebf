"""How much the rate limiter adds to a request.

    .venv/bin/python bench/rate_limit.py [--redis redis://127.0.0.1:6379/15]

Measures `RateLimiter.check` (policy + storage, two buckets: principal and tenant) with the
in-memory storage, and with Redis when a URL is given — the work the middleware does per
request besides reading headers. Prints per-call latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time

from workflow_engine.ratelimit.gcra import Limit
from workflow_engine.ratelimit.limiter import RateLimiter
from workflow_engine.ratelimit.policy import RateLimitPolicy
from workflow_engine.ratelimit.storage import MemoryStorage, RateLimitStorage, RedisStorage


async def measure(storage: RateLimitStorage, calls: int, principals: int) -> list[float]:
    policy = RateLimitPolicy(Limit(10**9, 10**9), tenant=Limit(10**9, 10**9), endpoints={})
    limiter = RateLimiter(policy, storage, fail_open=True)
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await limiter.check("GET", "/api/v1/uptime", f"user:{i % principals}", "tenant-1")
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def report(name: str, samples: list[float]) -> None:
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99)]
    print(f"| {name} | {len(samples)} | {p50:.1f} µs | {p99:.1f} µs |")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--principals", type=int, default=1_000)
    parser.add_argument("--redis", help="also measure Redis storage at this URL")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}\n")
    print("| storage | calls | p50 per check | p99 per check |")
    print("|---|---|---|---|")
    report("memory", await measure(MemoryStorage(), args.calls, args.principals))
    if args.redis:
        redis = RedisStorage(args.redis, prefix="bench:ratelimit:")
        try:
            report("redis (loopback)", await measure(redis, args.calls // 20, args.principals))
        finally:
            await redis.close()


if __name__ == "__main__":
    asyncio.run(main())
