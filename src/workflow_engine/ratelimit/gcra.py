"""The Generic Cell Rate Algorithm: an exact token bucket kept as one number per key.

A bucket of capacity `burst` refilling `per_minute` tokens a minute is described by its
emission interval T = 60 / per_minute and its tolerance tau = (burst - 1) * T. For each key we
store the "theoretical arrival time" (TAT) of the next request. A request at `now` passes when
TAT - tau <= now, and then moves TAT to max(TAT, now) + T. That is all the state there is, so
the Redis version is a few lines of Lua and the in-memory one a dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple


@dataclass(frozen=True)
class Limit:
    per_minute: int
    burst: int

    # Computed once: every request reads them for each of its buckets.
    @cached_property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @cached_property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


# Bucket and Decision are made for every request: named tuples cost a third of frozen
# dataclasses to build.
class Bucket(NamedTuple):
    key: str
    limit: Limit


class Decision(NamedTuple):
    """The outcome for one request, described by its most constrained bucket."""

    allowed: bool
    limit: int  # the bucket's capacity
    remaining: int  # tokens left after this request
    reset_after: float  # seconds until the bucket is full again
    retry_after: float  # seconds until a request would pass (0 when allowed)


def decide(
    buckets: list[Bucket], tats: list[float | None], now: float
) -> tuple[Decision, list[float]]:
    """Check every bucket; consume from all of them only if all allow. Returns the decision and
    the new TATs to store (unchanged ones when refused). The bucket that describes a refusal
    is the one with the longest wait; an allowed request, the one with the fewest tokens left
    (the first such, on a tie). Plain loops: this runs on every request."""
    current: list[float] = []
    wait, waiting = -math.inf, 0
    for index, (bucket, stored) in enumerate(zip(buckets, tats, strict=True)):
        tat = now if stored is None or stored < now else stored
        current.append(tat)
        bucket_wait = tat - bucket.limit.tolerance - now
        if bucket_wait > wait:
            wait, waiting = bucket_wait, index
    if wait > 0:
        decision = Decision(
            allowed=False,
            limit=buckets[waiting].limit.burst,
            remaining=0,
            reset_after=current[waiting] - now,
            retry_after=wait,
        )
        return decision, current
    updated: list[float] = []
    fewest, binding = math.inf, 0
    for index, (bucket, tat) in enumerate(zip(buckets, current, strict=True)):
        limit = bucket.limit
        new = tat + limit.interval
        updated.append(new)
        left = math.floor((now + limit.tolerance + limit.interval - new) / limit.interval + 1e-9)
        if left < fewest:
            fewest, binding = left, index
    decision = Decision(
        allowed=True,
        limit=buckets[binding].limit.burst,
        remaining=max(0, int(fewest)),
        reset_after=updated[binding] - now,
        retry_after=0.0,
    )
    return decision, updated
