"""Daily LLM budgets: the limits that apply to a tenant, and whether one is spent. Pure.

The server's budgets (`LLM_TOKEN_BUDGET_PER_DAY`, `LLM_COST_BUDGET_PER_DAY`) apply to every
tenant; `LLM_TENANT_BUDGETS` overrides either for a tenant, by name. A budget is spent when
the tenant's usage of the current UTC day is at or over it: the check comes before a call, so
the call that crosses the limit is answered and the next one refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workflow_engine.config import Settings


@dataclass(frozen=True)
class Limit:
    """One budget: its value and the setting it comes from (named in the refusal)."""

    value: float
    setting: str


@dataclass(frozen=True)
class Limits:
    """The daily budgets of one tenant; None: no limit."""

    tokens: Limit | None = None
    cost_usd: Limit | None = None

    @property
    def unlimited(self) -> bool:
        return self.tokens is None and self.cost_usd is None

    def refusal(self, spent: Spent) -> str | None:
        """Why no further call may be made today, or None while both budgets have room."""
        if self.tokens is not None and spent.tokens >= self.tokens.value:
            return (
                f"the tenant's daily token budget ({self.tokens.setting} = "
                f"{self.tokens.value:g}) is spent: {spent.tokens} tokens used today (UTC)"
            )
        if self.cost_usd is not None and spent.cost_usd >= self.cost_usd.value:
            return (
                f"the tenant's daily cost budget ({self.cost_usd.setting} = "
                f"{self.cost_usd.value:g} USD) is spent: {dollars(spent.cost_usd)} USD of "
                "estimated cost used today (UTC)"
            )
        return None


@dataclass(frozen=True)
class Spent:
    """A tenant's usage of one day."""

    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class TenantBudget:
    tokens: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Budgets:
    tokens: int | None = None
    cost_usd: float | None = None
    per_tenant: Mapping[str, TenantBudget] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        return cls(
            settings.llm_token_budget_per_day,
            settings.llm_cost_budget_per_day,
            MappingProxyType({
                name: TenantBudget(budget.token_budget_per_day, budget.cost_budget_per_day)
                for name, budget in settings.llm_tenant_budgets.items()
            }),
        )  # fmt: skip

    @property
    def none(self) -> bool:
        """No tenant has a budget: nothing to check."""
        return self.tokens is None and self.cost_usd is None and not self.per_tenant

    def of(self, tenant_name: str | None) -> Limits:
        """The limits of the tenant named `tenant_name` (None: the server's)."""
        own = self.per_tenant.get(tenant_name) if tenant_name is not None else None
        override = f'LLM_TENANT_BUDGETS["{tenant_name}"]'
        tokens = cost = None
        if own is not None and own.tokens is not None:
            tokens = Limit(own.tokens, f"{override}.token_budget_per_day")
        elif self.tokens is not None:
            tokens = Limit(self.tokens, "LLM_TOKEN_BUDGET_PER_DAY")
        if own is not None and own.cost_usd is not None:
            cost = Limit(own.cost_usd, f"{override}.cost_budget_per_day")
        elif self.cost_usd is not None:
            cost = Limit(self.cost_usd, "LLM_COST_BUDGET_PER_DAY")
        return Limits(tokens, cost)


def dollars(amount: float) -> str:
    """An estimated cost as people read it: at most six decimals, no trailing zeros."""
    return f"{round(amount, 6):.6f}".rstrip("0").rstrip(".")
