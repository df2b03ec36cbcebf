"""What the API answers about usage: a tenant's per day, with its budgets, and a run's."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from workflow_engine.db import Database
from workflow_engine.errors import InvalidInput, NotFound
from workflow_engine.usage import store
from workflow_engine.usage.budgets import Budgets, Limit
from workflow_engine.usage.store import DailyRow, Figures, Filters, StepRow

DEFAULT_DAYS = 30
MAX_DAYS = 366


def today() -> date:
    return datetime.now(UTC).date()


def filters(
    first: date | None,
    last: date | None,
    workflow_name: str | None = None,
    model: str | None = None,
) -> Filters:
    """The day range asked for (by default the last 30 days, today included), checked."""
    last = last if last is not None else today()
    if first is None:  # not before the first date there is: `to` may be any date
        first = last - timedelta(days=min(DEFAULT_DAYS - 1, (last - date.min).days))
    if first > last:
        raise InvalidInput(
            f"`from` ({first}) is after `to` ({last})",
            errors=[{"loc": ["query", "from"], "msg": "after `to`", "type": "value_error"}],
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidInput(
            f"the range from {first} to {last} spans more than {MAX_DAYS} days",
            errors=[{"loc": ["query", "from"], "msg": f"more than {MAX_DAYS} days before `to`",
                     "type": "value_error"}],
        )  # fmt: skip
    return Filters(first, last, workflow_name, model)


@dataclass(frozen=True)
class BudgetState:
    """One daily budget of the tenant today: None for `limit` and `remaining` when unlimited."""

    limit: float | None
    setting: str | None
    used: float
    remaining: float | None

    @classmethod
    def of(cls, limit: Limit | None, used: float) -> BudgetState:
        if limit is None:
            return cls(None, None, used, None)
        return cls(limit.value, limit.setting, used, max(0, limit.value - used))


@dataclass(frozen=True)
class Today:
    day: date
    tokens: BudgetState
    cost_usd: BudgetState


@dataclass(frozen=True)
class TenantUsage:
    filters: Filters
    totals: Figures
    rows: list[DailyRow]  # one more than the page asked for when another page follows
    today: Today


async def tenant_usage(
    db: Database,
    budgets: Budgets,
    tenant_id: uuid.UUID,
    asked: Filters,
    *,
    after: tuple[date, str, str, str] | None,
    limit: int,
) -> TenantUsage:
    day = today()
    async with db.tenant_read(tenant_id) as conn:
        totals = await store.totals(conn, tenant_id, asked)
        rows = await store.daily_rows(conn, tenant_id, asked, after=after, limit=limit + 1)
        spent = await store.spent_on(conn, tenant_id, day)
        name = await store.tenant_name(conn, tenant_id) if budgets.per_tenant else None
    limits = budgets.of(name)
    state = Today(
        day, BudgetState.of(limits.tokens, spent.tokens),
        BudgetState.of(limits.cost_usd, spent.cost_usd),
    )  # fmt: skip
    return TenantUsage(asked, totals, rows, state)


@dataclass(frozen=True)
class RunUsage:
    run_id: uuid.UUID
    workflow_name: str
    totals: Figures
    steps: list[StepRow]


async def run_usage(db: Database, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunUsage:
    async with db.tenant_read(tenant_id) as conn:
        workflow_name = await store.run_workflow(conn, tenant_id, run_id)
        if workflow_name is None:
            raise NotFound(f"no run {run_id}")
        steps = await store.run_rows(conn, tenant_id, run_id)
    return RunUsage(run_id, workflow_name, _sum(step.figures for step in steps), steps)


def _sum(figures: Iterable[Figures]) -> Figures:
    total = Figures()
    for each in figures:
        total = Figures(
            total.calls + each.calls, total.failed_calls + each.failed_calls,
            total.prompt_tokens + each.prompt_tokens,
            total.completion_tokens + each.completion_tokens,
            total.cost_usd + each.cost_usd, total.unpriced_calls + each.unpriced_calls,
        )  # fmt: skip
    return total
