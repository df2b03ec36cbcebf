"""Upcasting: events keep the schema version they were written with; registered upcasters
turn old shapes into the current one as events are read, so the log is never rewritten.

    upcasters = Upcasters()

    @upcasters.register("ItemAdded", from_version=1)
    def item_added_v2(data: dict) -> dict:   # v1 -> v2: `n` became `count`
        return {"count": data["n"]}

Steps chain (1 -> 2 -> 3 ...) until no step is registered for the event's version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from workflow_engine.events.store import RecordedEvent

Upcast = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcast] = {}

    def register(self, event_type: str, *, from_version: int) -> Callable[[Upcast], Upcast]:
        """Register the step that turns `event_type` at `from_version` into `from_version + 1`."""

        def decorate(step: Upcast) -> Upcast:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"{event_type} v{from_version} already has an upcaster")
            self._steps[key] = step
            return step

        return decorate

    def current_version(self, event_type: str) -> int:
        """The version events of this type are upcast to (what new ones should be written as)."""
        version = 1
        while (event_type, version) in self._steps:
            version += 1
        return version

    @property
    def empty(self) -> bool:
        """No upcaster is registered: every event reads as it was written."""
        return not self._steps

    def apply(self, event: RecordedEvent) -> RecordedEvent:
        data, version = self.upcast(event.event_type, event.schema_version, event.data)
        if version == event.schema_version:
            return event
        return dataclasses.replace(event, data=data, schema_version=version)

    def upcast(
        self, event_type: str, schema_version: int, data: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """The data in its current shape, and the schema version of that shape."""
        version = schema_version
        while (step := self._steps.get((event_type, version))) is not None:
            data, version = step(dict(data)), version + 1
        return data, version
