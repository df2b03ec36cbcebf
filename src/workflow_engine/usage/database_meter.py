"""The worker's usage meter: LLM calls recorded in `llm_usage`, budgets checked against it.

The check before a call sums the tenant's usage of the current UTC day (one indexed
aggregate) and is skipped when no budget applies to the tenant. Calls run concurrently are
each checked before any of them is recorded, so a tenant may overshoot a budget by what its
calls in flight spend: the budget stops the calls after those, it does not cut one short.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog

from workflow_engine.db import Database
from workflow_engine.usage import store
from workflow_engine.usage.budgets import Budgets
from workflow_engine.usage.meter import BudgetSpent, LLMCall

logger = structlog.get_logger(__name__)


class DatabaseMeter:
    def __init__(self, db: Database, budgets: Budgets) -> None:
        self.db = db
        self.budgets = budgets
        # Tenant names, for `LLM_TENANT_BUDGETS`: a tenant is never renamed.
        self._names: dict[uuid.UUID, str | None] = {}

    async def admit(self, tenant_id: uuid.UUID) -> None:
        if self.budgets.none:
            return
        name = await self._name(tenant_id) if self.budgets.per_tenant else None
        limits = self.budgets.of(name)
        if limits.unlimited:
            return
        async with self.db.read() as conn:
            spent = await store.spent_on(conn, tenant_id, datetime.now(UTC).date())
        refusal = limits.refusal(spent)
        if refusal is not None:
            raise BudgetSpent(refusal)

    async def record(self, call: LLMCall) -> None:
        try:
            async with self.db.transaction() as conn:
                await store.insert_call(conn, call, datetime.now(UTC))
        except Exception as exc:  # the call was made and answered: the step goes on
            logger.warning("recording an LLM call's usage failed", run_id=str(call.run_id),
                           step=call.step_id, error=type(exc).__name__)  # fmt: skip

    async def _name(self, tenant_id: uuid.UUID) -> str | None:
        if tenant_id not in self._names:
            async with self.db.read() as conn:
                self._names[tenant_id] = await store.tenant_name(conn, tenant_id)
        return self._names[tenant_id]
