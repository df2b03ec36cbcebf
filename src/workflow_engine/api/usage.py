"""`/api/v1/usage`: what a tenant's LLM calls used per day, with its budgets; and per run."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from workflow_engine.api.context import Context, DatabaseDep
from workflow_engine.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import require
from workflow_engine.api.validation import Day, StorableText
from workflow_engine.auth.permissions import Permission
from workflow_engine.auth.principal import Principal
from workflow_engine.engine.definitions import NAME_PATTERN
from workflow_engine.errors import InvalidInput
from workflow_engine.usage import service
from workflow_engine.usage.budgets import Budgets
from workflow_engine.usage.service import BudgetState
from workflow_engine.usage.store import DailyRow, Figures, StepRow

router = resource_router()
Reader = Annotated[Principal, require(Permission.workflows_read)]


class UsageFigures(BaseModel):
    calls: int = Field(
        description="Requests the providers answered (an extraction that asked again counts "
        "two), those of calls that failed all the same included."
    )
    failed_calls: int = Field(
        description="Answered requests of LLM calls that failed all the same (an extraction "
        "whose second answer was still invalid)."
    )
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float = Field(description="Estimated from the price list (`LLM_PRICES`).")
    unpriced_calls: int = Field(description="Calls of models with no price: not in `cost_usd`.")


def _figures(figures: Figures) -> dict[str, Any]:
    return {
        "calls": figures.calls, "failed_calls": figures.failed_calls,
        "prompt_tokens": figures.prompt_tokens, "completion_tokens": figures.completion_tokens,
        "total_tokens": figures.total_tokens, "cost_usd": round(figures.cost_usd, 9),
        "unpriced_calls": figures.unpriced_calls,
    }  # fmt: skip


class DailyUsage(UsageFigures):
    day: date = Field(description="A UTC day.")
    workflow_name: str
    provider: str
    model: str = Field(description="The model that answered, as its provider named it.")


class Budget(BaseModel):
    # Tokens are whole numbers, dollars not.
    limit: int | float | None = Field(description="Null: no limit.")
    setting: str | None = Field(description="The setting the limit comes from.")
    used: int | float = Field(description="Used today (UTC).")
    remaining: int | float | None = Field(description="Null: no limit.")


class TodaysBudgets(BaseModel):
    day: date = Field(description="Today (UTC): budgets are per UTC day.")
    tokens: Budget
    cost_usd: Budget


class TenantUsage(BaseModel):
    from_: date = Field(serialization_alias="from")
    to: date
    totals: UsageFigures = Field(description="Over the whole range and filters, every page.")
    items: list[DailyUsage] = Field(description="Per day, workflow, provider and model.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
    budgets: TodaysBudgets


def _budget(state: BudgetState) -> Budget:
    remaining = None if state.remaining is None else round(state.remaining, 9)
    return Budget(
        limit=state.limit, setting=state.setting, used=round(state.used, 9), remaining=remaining
    )


def _daily(row: DailyRow) -> DailyUsage:
    return DailyUsage(day=row.day, workflow_name=row.workflow_name, provider=row.provider,
                      model=row.model, **_figures(row.figures))  # fmt: skip


def _after(cursor: str | None) -> tuple[date, str, str, str] | None:
    key = decode_cursor(cursor, day=str, workflow=str, provider=str, model=str)
    if key is None:
        return None
    try:
        return date.fromisoformat(key["day"]), key["workflow"], key["provider"], key["model"]
    except ValueError:
        raise InvalidInput("the cursor is not one this server issued") from None


@router.get(
    "/api/v1/usage",
    summary="The tenant's LLM usage per day, workflow and model, and its daily budgets",
    tags=["usage"],
)
async def tenant_usage(
    reader: Reader,
    db: DatabaseDep,
    context: Context,
    first: Annotated[
        Day | None,
        Query(alias="from", description="First day (UTC), by default 29 days before `to`."),
    ] = None,
    last: Annotated[
        Day | None, Query(alias="to", description="Last day (UTC), included; today if left out.")
    ] = None,
    workflow: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="Only this workflow's calls.")
    ] = None,
    model: Annotated[
        StorableText | None,
        Query(min_length=1, max_length=200, description="Only calls this model answered."),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> TenantUsage:
    """Every LLM call a step of the tenant made (failed ones that spent tokens included),
    summed per UTC day, workflow, provider and model, oldest day first; `totals` over the
    whole range. The range spans at most 366 days. `budgets` are the tenant's daily
    token and cost budgets, what today used of them and what remains."""
    asked = service.filters(first, last, workflow, model)
    found = await service.tenant_usage(
        db, Budgets.from_settings(context.settings), reader.tenant_id, asked,
        after=_after(cursor), limit=limit,
    )  # fmt: skip
    shown = found.rows[:limit]
    next_cursor = None
    if len(found.rows) > limit:
        end = shown[-1]
        next_cursor = encode_cursor({"day": end.day.isoformat(), "workflow": end.workflow_name,
                                     "provider": end.provider, "model": end.model})  # fmt: skip
    return TenantUsage(
        from_=asked.first, to=asked.last, totals=UsageFigures(**_figures(found.totals)),
        items=[_daily(row) for row in shown], next_cursor=next_cursor,
        budgets=TodaysBudgets(day=found.today.day, tokens=_budget(found.today.tokens),
                              cost_usd=_budget(found.today.cost_usd)),
    )  # fmt: skip


class StepUsage(UsageFigures):
    step_id: str
    provider: str
    model: str = Field(description="The model that answered, as its provider named it.")


class RunUsage(BaseModel):
    workflow_id: uuid.UUID
    workflow_name: str
    totals: UsageFigures = Field(description="Every LLM call of the run, every attempt.")
    steps: list[StepUsage] = Field(description="Per step, provider and model, in call order.")


def _step(row: StepRow) -> StepUsage:
    return StepUsage(step_id=row.step_id, provider=row.provider, model=row.model,
                     **_figures(row.figures))  # fmt: skip


@router.get(
    "/api/v1/workflows/{workflow_id}/usage",
    summary="A run's LLM usage, per step and in total",
    tags=["workflows"],
)
async def run_usage(workflow_id: uuid.UUID, reader: Reader, db: DatabaseDep) -> RunUsage:
    """Every LLM call the run's steps made, each attempt's included (failed calls that spent
    tokens too), with the estimated cost. 404 for a run the tenant does not have."""
    found = await service.run_usage(db, reader.tenant_id, workflow_id)
    return RunUsage(
        workflow_id=found.run_id, workflow_name=found.workflow_name,
        totals=UsageFigures(**_figures(found.totals)), steps=[_step(s) for s in found.steps],
    )  # fmt: skip
