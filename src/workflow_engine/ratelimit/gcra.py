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


@dataclass(frozen=True)
class Limit:
    per_minute: int
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


@dataclass(frozen=True)
class Bucket:
    key: str
    limit: Limit


@dataclass(frozen=True)
class Decision:
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
    the new TATs to store (unchanged ones when refused)."""
    current = [max(tat if tat is not None else now, now) for tat in tats]
    wait = max(
        tat - bucket.limit.tolerance - now for bucket, tat in zip(buckets, current, strict=True)
    )
    if wait > 0:
        binding = max(
            range(len(buckets)),
            key=lambda i: current[i] - buckets[i].limit.tolerance - now,
        )
        return (
            Decision(
                allowed=False,
                limit=buckets[binding].limit.burst,
                remaining=0,
                reset_after=current[binding] - now,
                retry_after=wait,
            ),
            current,
        )
    updated = [tat + bucket.limit.interval for bucket, tat in zip(buckets, current, strict=True)]
    remaining = [
        math.floor((now + b.limit.tolerance + b.limit.interval - tat) / b.limit.interval + 1e-9)
        for b, tat in zip(buckets, updated, strict=True)
    ]
    binding = min(range(len(buckets)), key=lambda i: remaining[i])
    return (
        Decision(
            allowed=True,
            limit=buckets[binding].limit.burst,
            remaining=max(0, remaining[binding]),
            reset_after=updated[binding] - now,
            retry_after=0.0,
        ),
        updated,
    )
