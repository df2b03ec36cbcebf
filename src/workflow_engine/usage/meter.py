"""The usage meter a node's LLM calls go through (`NodeContext.usage`).

Nodes do not know the database: the worker gives each node context its meter, which records
every call and refuses one before it is sent once a daily budget of the tenant is spent. The
default meter records nothing and admits everything, for node contexts built without a worker
(unit tests, tools).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

OK = "ok"  # the outcome of an answered call; a failed one's is its error class


@dataclass(frozen=True)
class LLMCall:
    """One LLM call a step made (`call_llm`): answered, or failed after spending tokens."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    workflow_name: str
    step_id: str
    attempt: int
    provider: str
    model: str  # the model that answered, as the provider named it
    calls: int  # requests the provider answered (a structured answer may take two)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # estimated from the price list; None: the model has no price
    outcome: str = OK


class BudgetSpent(Exception):
    """A daily budget of the tenant is spent: the call must not be sent. The message names the
    budget, its setting and the numbers."""


class UsageMeter(Protocol):
    async def admit(self, tenant_id: uuid.UUID) -> None:
        """Raise `BudgetSpent` when a daily budget of the tenant is spent."""

    async def record(self, call: LLMCall) -> None:
        """Keep what `call` spent (never raises: the call was made either way)."""


class Unmetered:
    """Admits every call and records none."""

    async def admit(self, tenant_id: uuid.UUID) -> None:
        return None

    async def record(self, call: LLMCall) -> None:
        return None


UNMETERED: UsageMeter = Unmetered()
