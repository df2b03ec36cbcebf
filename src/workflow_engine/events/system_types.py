"""Aggregate types that belong to the server: clients may not append to them, and metrics
name them (any other type is counted as `client`, keeping the label set bounded)."""

from __future__ import annotations

# Aggregate types the server writes; a client may neither append to nor imitate them.
SYSTEM_AGGREGATE_TYPES = frozenset(
    {
        "api_keys",
        "approvals",
        "audit",
        "runs",
        "schedules",
        "services",
        "steps",
        "tenants",
        "users",
        "workflow_run",
        "workflow_runs",
        "workflows",
    }
)
SYSTEM_PREFIXES = ("system.", "workflow_engine.")


def is_system_type(aggregate_type: str) -> bool:
    return aggregate_type in SYSTEM_AGGREGATE_TYPES or aggregate_type.startswith(SYSTEM_PREFIXES)
