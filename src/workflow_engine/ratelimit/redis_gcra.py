"""GCRA in Redis: many requests decided by one script call, each possibly taking a lease.

The script is `gcra.decide` run atomically on Redis's clock (so that every server process
agrees on "now"), for a batch of requests in order: a later request in the batch sees the
buckets as the earlier ones left them, exactly as if each had made its own call. A request
may ask, per bucket, for more than its own token — a lease the process then spends locally
(`leases.py`). Redis grants at most a tenth of the tokens the bucket has left, and never
fewer than one: near its limit a client is decided here, one token at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from workflow_engine.ratelimit.gcra import Bucket

# A lease is at most this fraction of what is left in the shared bucket, so the processes
# holding leases keep most of a nearly empty bucket in Redis, where every process sees it.
LEASE_SHARE_OF_AVAILABLE = 10

# ARGV: the share divisor, then for each request its bucket count m and, per bucket, the
# emission interval, the tolerance and the tokens asked for. KEYS: every request's buckets in
# order. The reply, per request: allowed, retry_after, the 1-based index of the bucket that
# waits longest, then per bucket: tokens granted, tokens left in Redis, seconds until full.
# Floats travel as strings: Redis truncates Lua numbers in replies.
_BATCH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local share = tonumber(ARGV[1])
local seen = {}
local reply = {}
local a, k = 2, 1
while a <= #ARGV do
  local m = tonumber(ARGV[a])
  a = a + 1
  local tats, wait, wi = {}, -1e18, 1
  for i = 1, m do
    local key = KEYS[k + i - 1]
    local tau = tonumber(ARGV[a + 3 * i - 2])
    local tat = seen[key] or tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    tats[i] = tat
    if tat - tau - now > wait then wait = tat - tau - now; wi = i end
  end
  if wait > 0 then
    reply[#reply + 1] = 0
    reply[#reply + 1] = tostring(wait)
    reply[#reply + 1] = wi
    for i = 1, m do
      reply[#reply + 1] = 0
      reply[#reply + 1] = 0
      reply[#reply + 1] = tostring(tats[i] - now)
    end
  else
    reply[#reply + 1] = 1
    reply[#reply + 1] = '0'
    reply[#reply + 1] = wi
    for i = 1, m do
      local key = KEYS[k + i - 1]
      local interval = tonumber(ARGV[a + 3 * i - 3])
      local tau = tonumber(ARGV[a + 3 * i - 2])
      local asked = tonumber(ARGV[a + 3 * i - 1])
      local available = math.floor((now + tau + interval - tats[i]) / interval + 1e-9)
      local granted = math.min(asked, math.floor(available / share))
      if granted < 1 then granted = 1 end
      local new = tats[i] + granted * interval
      seen[key] = new
      redis.call('SET', key, tostring(new), 'PX', math.ceil((new - now) * 1000) + 1000)
      reply[#reply + 1] = granted
      reply[#reply + 1] = available - granted
      reply[#reply + 1] = tostring(new - now)
    end
  end
  a = a + 3 * m
  k = k + m
end
return reply
"""


class Ask(NamedTuple):
    """One request's buckets, and how many tokens it asks of each (1: just its own)."""

    buckets: Sequence[Bucket]
    tokens: Sequence[int]


class Grant(NamedTuple):
    tokens: int  # taken from the shared bucket: this request's one, and a lease of the rest
    remaining: int  # left in the shared bucket after that
    reset_after: float  # seconds until the shared bucket is full again


class Verdict(NamedTuple):
    """What Redis decided of one request."""

    allowed: bool
    retry_after: float  # 0 when allowed
    waiting: int  # the bucket with the longest wait (index into the request's buckets)
    grants: list[Grant]  # per bucket; no tokens when refused


class RedisBuckets:
    """Runs batches of asks through one script call on a redis-py client."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._script = client.register_script(_BATCH_LUA)
        self._prefix = prefix

    async def decide(self, asks: Sequence[Ask]) -> list[Verdict]:
        keys: list[str] = []
        args: list[float | int] = [LEASE_SHARE_OF_AVAILABLE]
        for ask in asks:
            args.append(len(ask.buckets))
            for bucket, tokens in zip(ask.buckets, ask.tokens, strict=True):
                keys.append(self._prefix + bucket.key)
                args += [bucket.limit.interval, bucket.limit.tolerance, tokens]
        reply = await self._script(keys=keys, args=args)
        return _verdicts(asks, reply)


def _verdicts(asks: Sequence[Ask], reply: Sequence[Any]) -> list[Verdict]:
    verdicts = []
    at = 0
    for ask in asks:
        allowed, retry_after, waiting = reply[at : at + 3]
        at += 3
        grants = []
        for _ in ask.buckets:
            tokens, remaining, reset_after = reply[at : at + 3]
            at += 3
            grants.append(Grant(int(tokens), max(0, int(remaining)), float(reset_after)))
        verdicts.append(Verdict(bool(allowed), float(retry_after), int(waiting) - 1, grants))
    return verdicts
