"""The Temporal workflows and activity of temporal_workload.py, in a module of their own:
Temporal's sandbox re-imports a workflow's module for each run, which a script run as
`__main__` cannot be."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

TIMEOUT = timedelta(seconds=60)


@activity.defn
async def noop() -> None:
    return None


@workflow.defn
class Three:
    @workflow.run
    async def run(self) -> None:
        for _ in range(3):
            await workflow.execute_activity(noop, start_to_close_timeout=TIMEOUT)


@workflow.defn
class Fan20:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=TIMEOUT)
        await asyncio.gather(
            *(workflow.execute_activity(noop, start_to_close_timeout=TIMEOUT) for _ in range(20))
        )
        await workflow.execute_activity(noop, start_to_close_timeout=TIMEOUT)
