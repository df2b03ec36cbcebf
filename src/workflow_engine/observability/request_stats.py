"""Requests served since start, errors and latency percentiles, in constant memory.

Latencies go into log-spaced buckets (each 10% wider than the last, from 0.1 ms to ~17 min), so
a percentile is exact to within 10% however many requests the process serves (anything
slower than ~16 minutes counts as ~16 minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_SMALLEST_MS = 0.1
_GROWTH = 1.1
_BUCKETS = 170


@dataclass(frozen=True)
class RequestSnapshot:
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None


class RequestStats:
    """Counts requests and server errors; estimates latency percentiles."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self._counts = [0] * _BUCKETS

    def record(self, status: int, duration_ms: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self._counts[self._bucket(duration_ms)] += 1

    @staticmethod
    def _bucket(duration_ms: float) -> int:
        if duration_ms <= _SMALLEST_MS:
            return 0
        index = 1 + int(math.log(duration_ms / _SMALLEST_MS, _GROWTH))
        return min(index, _BUCKETS - 1)

    def percentile(self, fraction: float) -> float | None:
        total = sum(self._counts)
        if total == 0:
            return None
        rank = math.ceil(fraction * total)
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                # The bucket's upper bound: never under-reports a latency.
                return round(_SMALLEST_MS * _GROWTH**index, 3)
        return None  # unreachable: the counts add up to total

    def snapshot(self) -> RequestSnapshot:
        return RequestSnapshot(
            self.requests, self.errors, self.percentile(0.50), self.percentile(0.95)
        )
