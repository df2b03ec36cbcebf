"""Tokens this process took from a shared bucket in Redis and spends without asking again.

A lease is sized by the demand this process has seen for the bucket: a bucket asked for once
gets no lease (its one token, exactly as without leases), one whose last lease ran out before
it expired asks for twice as many, one whose lease expired asks for what it used of it. So a
client making a request now and then costs the shared bucket nothing beyond its requests,
while a busy one goes to Redis about once per `LARGEST_LEASE` requests. Redis caps every
grant at a tenth of what the bucket has left (`redis_gcra.py`).

Unspent tokens are dropped when the lease expires. They were already counted as spent in
Redis, so the processes together never admit more than the bucket allows; what they hold
unspent is what other processes may refuse too early (under-admission), for at most
`LEASE_SECONDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from workflow_engine.ratelimit.gcra import Bucket, Limit
from workflow_engine.ratelimit.redis_gcra import Grant

LEASE_SECONDS = 1.0
LARGEST_LEASE = 100
# Expired leases are kept this long for sizing the next one, then swept every so many calls.
_FORGET_AFTER_SECONDS = LEASE_SECONDS
_SWEEP_EVERY = 10_000


# eq=False: a lease is a holding, not a value; `None in taken` then compares identities only.
@dataclass(slots=True, eq=False)
class Lease:
    limit: Limit
    size: int  # tokens granted
    tokens: int  # not yet spent by this process
    expires: float  # this process's monotonic clock
    full_at: float  # when the shared bucket is full again, as Redis said at the grant


class LeaseBook:
    """This process's leases, by bucket key."""

    def __init__(self, *, lifetime: float = LEASE_SECONDS, largest: int = LARGEST_LEASE) -> None:
        self.lifetime = lifetime
        self.largest = largest
        self._leases: dict[str, Lease] = {}
        self._refilling: set[str] = set()  # keys with a lease being asked for
        self._calls = 0

    def take(self, buckets: Sequence[Bucket], now: float) -> list[Lease | None]:
        """A token from each bucket's lease, where it has one; None where Redis must decide.
        Tokens taken for a request that is then refused go back with `give_back`."""
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        taken: list[Lease | None] = []
        for bucket in buckets:
            lease = self._leases.get(bucket.key)
            if lease is not None and lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                taken.append(lease)
            else:
                taken.append(None)
        return taken

    @staticmethod
    def give_back(taken: Sequence[Lease | None]) -> None:
        # To the lease they came from: if it expired or was replaced meanwhile, they are
        # dropped with it, which admits less, never more.
        for lease in taken:
            if lease is not None:
                lease.tokens += 1

    def ask(self, bucket: Bucket, now: float) -> tuple[int, bool]:
        """How many tokens to ask Redis for, and whether this request renews the lease (it
        must then call `renewed`). While one request renews a lease, the others ask for
        their own token only: one lease at a time per bucket."""
        if bucket.key in self._refilling:
            return 1, False
        self._refilling.add(bucket.key)
        return self._demand(self._leases.get(bucket.key), now), True

    def renewed(self, bucket: Bucket, grant: Grant | None, now: float) -> None:
        """The answer to a renewing ask (None: refused or Redis unreachable)."""
        self._refilling.discard(bucket.key)
        if grant is not None:
            self._leases[bucket.key] = Lease(
                limit=bucket.limit,
                size=grant.tokens,
                tokens=grant.tokens - 1,  # one is the renewing request's own
                expires=now + self.lifetime,
                full_at=now + grant.reset_after,
            )

    def _demand(self, previous: Lease | None, now: float) -> int:
        if previous is None or now >= previous.expires + _FORGET_AFTER_SECONDS:
            return 1
        if previous.tokens == 0 and now < previous.expires:
            return min(self.largest, 2 * previous.size)  # ran out early: busier than its size
        return max(1, previous.size - previous.tokens)

    def _sweep(self, now: float) -> None:
        self._leases = {
            key: lease
            for key, lease in self._leases.items()
            if now < lease.expires + _FORGET_AFTER_SECONDS
        }


def standing(lease: Lease, now: float) -> tuple[int, float]:
    """Tokens left and seconds until full, as this process can tell without asking: the shared
    bucket as Redis left it at the grant, refilled since, plus what is still leased here.
    Other processes' spending since the grant is not seen."""
    limit = lease.limit
    until_full = max(0.0, lease.full_at - now)
    shared = math.floor((limit.tolerance + limit.interval - until_full) / limit.interval + 1e-9)
    remaining = min(limit.burst - 1, shared + lease.tokens)
    # A token was just spent: the bucket is at least one interval from full.
    return remaining, max(until_full, limit.interval)
