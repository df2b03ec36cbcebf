"""The rate limiter service: policy + storage, and what happens when the storage is away."""

from __future__ import annotations

import structlog

from workflow_engine.bootstrap.lifecycle import Health
from workflow_engine.errors import ServiceUnavailable
from workflow_engine.observability import metrics
from workflow_engine.ratelimit.gcra import Decision
from workflow_engine.ratelimit.policy import RateLimitPolicy
from workflow_engine.ratelimit.storage import RateLimitStorage, StorageUnavailable

logger = structlog.get_logger(__name__)


class RateLimiter:
    """Decides requests. When the shared store is unreachable it fails open (serves, with one
    warning per outage) or closed (503), as configured."""

    def __init__(
        self, policy: RateLimitPolicy, storage: RateLimitStorage, *, fail_open: bool
    ) -> None:
        self.policy = policy
        self.storage = storage
        self.fail_open = fail_open
        self.fail_open_count = 0  # requests served unchecked (this process's; /metrics sums)
        self.rejected_count = 0
        self._storage_down = False

    async def check(
        self, method: str, path: str, principal_key: str, tenant_id: str | None
    ) -> Decision | None:
        """The decision for this request, or None when it is exempt or served unchecked."""
        if self.policy.exempt(path):
            return None
        buckets = self.policy.buckets(method, path, principal_key, tenant_id)
        try:
            decision = await self.storage.acquire(buckets)
        except StorageUnavailable as exc:
            self._storage_failed(exc)
            return None
        if self._storage_down:
            self._storage_down = False
            logger.info("rate-limit storage is reachable again")
        if not decision.allowed:
            self.rejected_count += 1
            metrics.rate_limit_rejected.inc()
        return decision

    def _storage_failed(self, exc: StorageUnavailable) -> None:
        if not self._storage_down:
            self._storage_down = True
            logger.warning(
                "rate-limit storage unreachable",
                fail_open=self.fail_open,
                error=str(exc),
            )
        if not self.fail_open:
            raise ServiceUnavailable("rate limiting is unavailable; try again shortly")
        self.fail_open_count += 1
        metrics.rate_limit_fail_open.inc()

    async def check_health(self) -> Health:
        try:
            await self.storage.ping()
        except StorageUnavailable:
            # The endpoint is public: no addresses or driver messages here (they are logged).
            mode = "failing open" if self.fail_open else "refusing requests"
            return Health.degraded(
                f"storage unreachable ({mode})", fail_open_count=self.fail_open_count
            )
        return Health.ok(fail_open_count=self.fail_open_count, rejected=self.rejected_count)
