"""How a registered service's status moves: pure rules, no I/O.

- `unknown` until the first result: a new (or revived) service is decided by one check, so
  it becomes usable at once, or visibly broken at once.
- After that it takes `healthy_threshold` passing checks in a row to become `healthy` and
  `unhealthy_threshold` failing ones to become `unhealthy`: one lost packet does not flap it.
- A service with a TTL is `expired` once neither a heartbeat nor a passing check has been
  seen for that long; a heartbeat or a passing check revives it. An expired service is
  removed after the grace period.
- A service without a health check URL is judged by its heartbeats alone (its TTL is then
  required): `healthy` while they come, `expired` when they stop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class ServiceStatus(StrEnum):
    unknown = "unknown"
    healthy = "healthy"
    unhealthy = "unhealthy"
    expired = "expired"


@dataclass(frozen=True)
class Thresholds:
    healthy: int = 2
    unhealthy: int = 2


@dataclass(frozen=True)
class Standing:
    """The part of a service's row the rules read and write."""

    status: ServiceStatus
    successes: int = 0
    failures: int = 0


_UNDECIDED = (ServiceStatus.unknown, ServiceStatus.expired)


def after_check(standing: Standing, passed: bool, thresholds: Thresholds) -> Standing:
    if passed:
        successes = standing.successes + 1
        decided = standing.status in _UNDECIDED or successes >= thresholds.healthy
        status = ServiceStatus.healthy if decided else standing.status
        return Standing(status, successes, 0)
    failures = standing.failures + 1
    if standing.status is ServiceStatus.expired:
        return Standing(standing.status, 0, failures)  # only a sign of life revives it
    decided = standing.status is ServiceStatus.unknown or failures >= thresholds.unhealthy
    return Standing(ServiceStatus.unhealthy if decided else standing.status, 0, failures)


def after_heartbeat(standing: Standing, health_checked: bool) -> Standing:
    if not health_checked:
        return replace(standing, status=ServiceStatus.healthy)
    if standing.status is ServiceStatus.expired:
        # Alive again; its health is for the next check to say.
        return Standing(ServiceStatus.unknown)
    return standing


def has_expired(ttl_seconds: int | None, last_alive_at: datetime, now: datetime) -> bool:
    return ttl_seconds is not None and now - last_alive_at > timedelta(seconds=ttl_seconds)
