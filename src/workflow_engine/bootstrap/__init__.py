"""The process's services and their lifecycle (the seed's "Service Bootstrap")."""

from workflow_engine.bootstrap.lifecycle import (
    BootstrapError,
    Health,
    HealthStatus,
    Service,
    ServiceBootstrapManager,
    ServiceReport,
    ServiceSpec,
    ServiceStartError,
)

__all__ = [
    "BootstrapError",
    "Health",
    "HealthStatus",
    "Service",
    "ServiceBootstrapManager",
    "ServiceReport",
    "ServiceSpec",
    "ServiceStartError",
]
