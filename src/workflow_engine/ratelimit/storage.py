"""Where bucket state lives: this process's memory, or Redis (shared by every process).

Both take all of a request's buckets at once and either consume from all or from none, so a
request refused by its tenant's ceiling does not also spend its principal's tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from workflow_engine.ratelimit.batching import TurnBatcher
from workflow_engine.ratelimit.gcra import Bucket, Decision, decide
from workflow_engine.ratelimit.leases import Lease, LeaseBook, standing
from workflow_engine.ratelimit.redis_gcra import Ask, Grant, RedisBuckets, Verdict

# Keys of idle buckets are dropped once full again; this bounds memory under many clients.
_MEMORY_SWEEP_EVERY = 10_000


class RateLimitStorage(Protocol):
    async def acquire(self, buckets: list[Bucket]) -> Decision:
        """Decide one request. May raise `StorageUnavailable`."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...


class StorageUnavailable(Exception):
    """The shared store could not be reached; the caller applies fail-open or fail-closed."""


class MemoryStorage:
    """Buckets in this process's memory: exact, fast, and per process (one server only)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._calls = 0

    async def acquire(self, buckets: list[Bucket]) -> Decision:
        now = self._clock()
        decision, tats = decide(buckets, [self._tats.get(b.key) for b in buckets], now)
        if decision.allowed:
            for bucket, tat in zip(buckets, tats, strict=True):
                self._tats[bucket.key] = tat
        self._calls += 1
        if self._calls % _MEMORY_SWEEP_EVERY == 0:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        return decision

    async def close(self) -> None:
        self._tats.clear()

    async def ping(self) -> None:
        return None


class RedisStorage:
    """Buckets in Redis: one limit however many server processes and machines share it.

    A request spends from this process's leases where it holds one for each of its buckets
    (`leases.py`) and otherwise asks Redis for the buckets it lacks; the asks of one turn of
    the event loop go in one call (`batching.py`), decided in order by one Lua script
    (`redis_gcra.py`). A refusal always comes from Redis, so its `Retry-After` is exact.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "workflow-engine:ratelimit:",
        leases: LeaseBook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as redis  # the `redis` extra; checked at start-up by the CLI

        self._errors: tuple[type[BaseException], ...] = (
            redis.RedisError,
            OSError,
            TimeoutError,
        )
        # Short timeouts: a slow Redis must not hold requests (fail-open decides what happens).
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, retry_on_timeout=False
        )
        self._buckets = RedisBuckets(self._client, prefix)
        self._batcher = TurnBatcher(self._decide)
        self._leases = leases if leases is not None else LeaseBook()
        self._clock = clock

    async def _decide(self, asks: list[Ask]) -> list[Verdict]:
        try:
            return await self._buckets.decide(asks)
        except self._errors as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def acquire(self, buckets: list[Bucket]) -> Decision:
        now = self._clock()
        taken = self._leases.take(buckets, now)
        if None not in taken:
            return _combined(buckets, taken, iter(()), now)
        lacking = [bucket for bucket, lease in zip(buckets, taken, strict=True) if lease is None]
        asked = [self._leases.ask(bucket, now) for bucket in lacking]
        try:
            verdict = await self._batcher.submit(Ask(lacking, [tokens for tokens, _ in asked]))
        except BaseException:  # Redis away, or the request cancelled: nothing was granted
            self._settle(lacking, asked, None, taken, now)
            raise
        self._settle(lacking, asked, verdict, taken, now)
        if not verdict.allowed:
            binding = lacking[verdict.waiting]
            return Decision(
                allowed=False,
                limit=binding.limit.burst,
                remaining=0,
                reset_after=verdict.grants[verdict.waiting].reset_after,
                retry_after=verdict.retry_after,
            )
        return _combined(buckets, taken, iter(verdict.grants), now)

    def _settle(
        self,
        lacking: list[Bucket],
        asked: list[tuple[int, bool]],
        verdict: Verdict | None,
        taken: list[Lease | None],
        now: float,
    ) -> None:
        """Renewed leases go into the book; a request not admitted returns its leased tokens."""
        grants = verdict.grants if verdict is not None and verdict.allowed else None
        for index, (bucket, (_, renews)) in enumerate(zip(lacking, asked, strict=True)):
            if renews:
                self._leases.renewed(bucket, grants[index] if grants else None, now)
        if grants is None:
            self._leases.give_back(taken)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except self._errors as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._batcher.close()
        await self._client.aclose()


def _combined(
    buckets: list[Bucket], taken: list[Lease | None], grants: Iterator[Grant], now: float
) -> Decision:
    """An allowed request's headers, from the bucket with the fewest tokens left (the first
    such, on a tie, as `gcra.decide`): each bucket as its lease tells it, or as Redis just
    granted it (`grants`, in order, for the buckets without a lease)."""
    fewest, binding, reset = math.inf, 0, 0.0
    for index, lease in enumerate(taken):
        if lease is not None:
            left, until_full = standing(lease, now)
        else:
            grant = next(grants)
            left, until_full = grant.remaining + grant.tokens - 1, grant.reset_after
        if left < fewest:
            fewest, binding, reset = left, index, until_full
    return Decision(
        allowed=True,
        limit=buckets[binding].limit.burst,
        remaining=max(0, int(fewest)),
        reset_after=reset,
        retry_after=0.0,
    )
