"""Which buckets a request draws from: its principal's (or an endpoint override's) and its
tenant's ceiling."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from workflow_engine.ratelimit.gcra import Bucket, Limit

# Never limited: probes and docs must answer even when a client is throttled, and the demo
# services stand in for third parties, whose limits are their own.
EXEMPT_PREFIXES = ("/health", "/metrics", "/swagger-ui", "/api/v1/openapi.json", "/demo/")
# The dashboard's shell and files (`/ui`, `/ui/...`, not `/uix`): a first load fetches a dozen
# files at once, more than a burst allows, and serving them costs a lookup in memory. The API
# calls the dashboard then makes are limited like any client's.
UI_ROOT = "/ui"


@dataclass(frozen=True)
class EndpointRule:
    name: str  # as configured: "POST /api/v1/auth/login"
    method: str
    pattern: re.Pattern[str]
    limit: Limit


def compile_endpoint(name: str, limit: Limit) -> EndpointRule:
    """`"POST /api/v1/workflows/{id}/cancel"` -> a rule matching that method and path shape."""
    method, _, template = name.partition(" ")
    parts = re.split(r"(\{[^}/]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return EndpointRule(name, method.upper(), re.compile(f"^{regex}/?$"), limit)


class RateLimitPolicy:
    def __init__(
        self, default: Limit, *, tenant: Limit | None, endpoints: Mapping[str, Limit]
    ) -> None:
        self.default = default
        self.tenant = tenant
        self.rules = [compile_endpoint(name, limit) for name, limit in endpoints.items()]

    @staticmethod
    def exempt(path: str) -> bool:
        if path.startswith(UI_ROOT):
            return path == UI_ROOT or path.startswith("/", len(UI_ROOT))
        return path.startswith(EXEMPT_PREFIXES)

    def buckets(
        self, method: str, path: str, principal_key: str, tenant_id: str | None
    ) -> list[Bucket]:
        rule = next((r for r in self.rules if r.method == method and r.pattern.match(path)), None)
        if rule is not None:
            buckets = [Bucket(f"ep:{rule.name}:{principal_key}", rule.limit)]
        else:
            buckets = [Bucket(f"p:{principal_key}", self.default)]
        if tenant_id is not None and self.tenant is not None:
            buckets.append(Bucket(f"t:{tenant_id}", self.tenant))
        return buckets
