"""The registry's settings, in the shape its parts use."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflow_engine.config import Settings
from workflow_engine.net.addresses import NetworkPolicy, parse_networks
from workflow_engine.registry.status import Thresholds

NETWORKS_SETTING = "REGISTRY_ALLOWED_NETWORKS"


@dataclass(frozen=True)
class RegistryOptions:
    policy: NetworkPolicy = field(default_factory=lambda: NetworkPolicy((), NETWORKS_SETTING))
    check_interval: float = 10.0
    check_timeout: float = 5.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    expired_grace: float = 300.0
    check_history: int = 100  # checks kept per service

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryOptions:
        return cls(
            policy=NetworkPolicy(
                parse_networks(settings.effective_registry_allowed_networks), NETWORKS_SETTING
            ),
            check_interval=settings.registry_check_interval_seconds,
            check_timeout=settings.registry_check_timeout_seconds,
            thresholds=Thresholds(
                healthy=settings.registry_healthy_threshold,
                unhealthy=settings.registry_unhealthy_threshold,
            ),
            expired_grace=settings.registry_expired_grace_seconds,
            check_history=settings.registry_check_history,
        )
