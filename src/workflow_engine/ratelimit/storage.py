"""Where bucket state lives: this process's memory, or Redis (shared by every process).

Both take all of a request's buckets at once and either consume from all or from none, so a
request refused by its tenant's ceiling does not also spend its principal's tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from workflow_engine.ratelimit.gcra import Bucket, Decision, decide

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


# The same algorithm as `gcra.decide`, atomic inside Redis, on Redis's clock (so that every
# server process agrees on "now"). Floats travel as strings: Redis truncates Lua numbers.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tats = {}
local wait, wi = -1e18, 1
for i = 1, #KEYS do
  local tau = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat - tau - now > wait then wait = tat - tau - now; wi = i end
end
if wait > 0 then
  return {0, 0, tostring(wait), tostring(tats[wi] - now), wi}
end
local best, bi, reset = 1e18, 1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local new = tats[i] + interval
  redis.call('SET', KEYS[i], tostring(new), 'PX', math.ceil((new - now) * 1000) + 1000)
  local left = math.floor((now + tau + interval - new) / interval + 1e-9)
  if left < best then best = left; bi = i; reset = new - now end
end
return {1, best, '0', tostring(reset), bi}
"""


class RedisStorage:
    """Buckets in Redis: one limit however many server processes and machines share it."""

    def __init__(self, url: str, *, prefix: str = "workflow-engine:ratelimit:") -> None:
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
        self._script = self._client.register_script(_GCRA_LUA)
        self._prefix = prefix

    async def acquire(self, buckets: list[Bucket]) -> Decision:
        keys = [self._prefix + bucket.key for bucket in buckets]
        args: list[float] = []
        for bucket in buckets:
            args += [bucket.limit.interval, bucket.limit.tolerance]
        try:
            allowed, remaining, retry_after, reset_after, index = await self._script(
                keys=keys, args=args
            )
        except self._errors as exc:
            raise StorageUnavailable(str(exc)) from exc
        binding = buckets[int(index) - 1]
        return Decision(
            allowed=bool(allowed),
            limit=binding.limit.burst,
            remaining=max(0, int(remaining)),
            reset_after=float(reset_after),
            retry_after=float(retry_after),
        )

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except self._errors as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()
