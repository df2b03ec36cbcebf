"""The usage SQL: every statement on `llm_usage` lives here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import llm_usage, tenants, workflow_runs
from workflow_engine.usage.budgets import Spent
from workflow_engine.usage.meter import OK, LLMCall

MAX_MODEL = 200  # the column's width; a provider may name its model at any length

_TOKENS = llm_usage.c.prompt_tokens + llm_usage.c.completion_tokens


def _figures() -> list[ColumnElement[Any]]:
    """The sums every grouped read answers, labelled as the API names them."""
    return [
        func.coalesce(func.sum(llm_usage.c.calls), 0).label("calls"),
        func.sum(case((llm_usage.c.outcome != OK, llm_usage.c.calls), else_=0)).label(
            "failed_calls"
        ),
        func.sum(llm_usage.c.prompt_tokens).label("prompt_tokens"),
        func.sum(llm_usage.c.completion_tokens).label("completion_tokens"),
        func.coalesce(func.sum(llm_usage.c.cost_usd), 0.0).label("cost_usd"),
        func.sum(case((llm_usage.c.cost_usd.is_(None), llm_usage.c.calls), else_=0)).label(
            "unpriced_calls"
        ),
    ]


@dataclass(frozen=True)
class Figures:
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # calls of models with no price: not in `cost_usd`

    @classmethod
    def of(cls, row: Any) -> Figures:
        return cls(
            int(row.calls), int(row.failed_calls or 0), int(row.prompt_tokens or 0),
            int(row.completion_tokens or 0), float(row.cost_usd or 0), int(row.unpriced_calls or 0),
        )  # fmt: skip

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class DailyRow:
    day: date
    workflow_name: str
    provider: str
    model: str
    figures: Figures


@dataclass(frozen=True)
class StepRow:
    step_id: str
    provider: str
    model: str
    figures: Figures


@dataclass(frozen=True)
class Filters:
    first: date
    last: date  # inclusive
    workflow_name: str | None = None
    model: str | None = None


async def insert_call(conn: AsyncConnection, call: LLMCall, at: datetime) -> None:
    await conn.execute(
        insert(llm_usage).values(
            tenant_id=call.tenant_id, run_id=call.run_id, step_id=call.step_id,
            attempt=call.attempt, workflow_name=call.workflow_name, provider=call.provider,
            model=call.model[:MAX_MODEL], calls=call.calls, prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens, cost_usd=call.cost_usd,
            outcome=call.outcome, day=at.date(), created_at=at,
        )
    )  # fmt: skip


async def spent_on(conn: AsyncConnection, tenant_id: uuid.UUID, day: date) -> Spent:
    """The tenant's tokens and estimated cost of `day`: one aggregate over an index range."""
    found = await conn.execute(
        select(func.coalesce(func.sum(_TOKENS), 0),
               func.coalesce(func.sum(llm_usage.c.cost_usd), 0.0))
        .where(llm_usage.c.tenant_id == tenant_id, llm_usage.c.day == day)
    )  # fmt: skip
    tokens, cost = found.one()
    return Spent(int(tokens), float(cost))


async def tenant_name(conn: AsyncConnection, tenant_id: uuid.UUID) -> str | None:
    found = await conn.execute(select(tenants.c.name).where(tenants.c.id == tenant_id))
    return found.scalar_one_or_none()


def _filtered(stmt: Select[Any], tenant_id: uuid.UUID, filters: Filters) -> Select[Any]:
    stmt = stmt.where(
        llm_usage.c.tenant_id == tenant_id,
        llm_usage.c.day >= filters.first,
        llm_usage.c.day <= filters.last,
    )
    if filters.workflow_name is not None:
        stmt = stmt.where(llm_usage.c.workflow_name == filters.workflow_name)
    if filters.model is not None:
        stmt = stmt.where(llm_usage.c.model == filters.model)
    return stmt


async def totals(conn: AsyncConnection, tenant_id: uuid.UUID, filters: Filters) -> Figures:
    found = await conn.execute(_filtered(select(*_figures()), tenant_id, filters))
    return Figures.of(found.one())


_DAILY_KEY = (llm_usage.c.day, llm_usage.c.workflow_name, llm_usage.c.provider, llm_usage.c.model)


async def daily_rows(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    filters: Filters,
    *,
    after: tuple[date, str, str, str] | None,
    limit: int,
) -> list[DailyRow]:
    """Usage grouped by day, workflow, provider and model, in that order, after `after`."""
    stmt = _filtered(select(*_DAILY_KEY, *_figures()), tenant_id, filters)
    if after is not None:
        # Every row of a group shares its key: filtering rows by it keeps or drops whole groups.
        stmt = stmt.where(tuple_(*_DAILY_KEY) > tuple_(*after))
    stmt = stmt.group_by(*_DAILY_KEY).order_by(*_DAILY_KEY).limit(limit)
    return [
        DailyRow(row.day, row.workflow_name, row.provider, row.model, Figures.of(row))
        for row in await conn.execute(stmt)
    ]


async def run_workflow(
    conn: AsyncConnection, tenant_id: uuid.UUID, run_id: uuid.UUID
) -> str | None:
    """The workflow of the tenant's run `run_id`, or None when it has no such run."""
    found = await conn.execute(
        select(workflow_runs.c.workflow_name).where(
            workflow_runs.c.id == run_id, workflow_runs.c.tenant_id == tenant_id
        )
    )
    return found.scalar_one_or_none()


async def run_rows(conn: AsyncConnection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> list[StepRow]:
    """The run's usage per step, provider and model, in the order of each group's first call."""
    key = (llm_usage.c.step_id, llm_usage.c.provider, llm_usage.c.model)
    stmt = (
        select(*key, *_figures())
        .where(llm_usage.c.tenant_id == tenant_id, llm_usage.c.run_id == run_id)
        .group_by(*key)
        .order_by(func.min(llm_usage.c.id))
    )
    return [
        StepRow(row.step_id, row.provider, row.model, Figures.of(row))
        for row in await conn.execute(stmt)
    ]
