"""A step's journal: what a node recorded as it went, kept across its attempts.

A node that does several things with side effects in one step (an agent calling tools turn
after turn) records each as it completes:

    done = {e["key"]: e for e in await ctx.journal.entries()}
    if "call-1" not in done:
        result = await call_the_tool()
        await ctx.journal.record({"key": "call-1", "result": result})

In a worker, `record` returns once the entry is an event of the run (`StepRecorded`, appended
under the attempt's lease), so a worker killed after it loses nothing recorded, and the next
attempt's `entries()` holds every entry of the step's earlier attempts, in order. An attempt
whose lease was lost cannot record (`JournalLost`): another worker holds the step now.
"""

from __future__ import annotations

from typing import Any, Protocol


class JournalLost(Exception):
    """The attempt no longer holds its step: nothing more can be recorded for it."""


class StepJournal(Protocol):
    async def entries(self) -> list[dict[str, Any]]:
        """Every entry recorded for this step, by this and earlier attempts, oldest first."""
        ...

    async def record(self, entry: dict[str, Any]) -> None:
        """Record `entry` (a JSON object) durably before returning."""
        ...


class AttemptJournal:
    """The journal of a node run outside a worker (a test calling a node function): it keeps
    entries for this attempt only."""

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self._entries = list(entries or ())

    async def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    async def record(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)
