"""A node that holds its worker's slot until the test lets it go: queues build up behind it."""

from __future__ import annotations

import asyncio
from typing import Any

from workflow_engine.nodes import NodeContext, node

HELD: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}  # key: (started, released)

BLOCKER = {"name": "blocker", "steps": [{"id": "hold", "uses": "test.hold",
                                         "with": {"key": "{{ input.key }}"}}]}  # fmt: skip
JOB = {"name": "job", "steps": [{"id": "work", "uses": "transform",
                                 "with": {"n": "{{ input.n }}"}}]}  # fmt: skip


@node("test.hold")
async def hold(ctx: NodeContext, *, key: str) -> dict[str, Any]:
    started, released = HELD[key]
    started.set()
    await released.wait()
    return {}


def holder(key: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The events of a new hold: (set once the step runs, set by the test to let it go)."""
    HELD[key] = (asyncio.Event(), asyncio.Event())
    return HELD[key]
