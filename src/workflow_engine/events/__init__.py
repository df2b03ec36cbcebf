"""The event log: the single source of truth every read model is folded from."""

from workflow_engine.events.append import append_events
from workflow_engine.events.projections import Projection, registry
from workflow_engine.events.service import EventStore
from workflow_engine.events.store import NewEvent, RecordedEvent, read_aggregate, read_log

__all__ = [
    "EventStore",
    "NewEvent",
    "Projection",
    "RecordedEvent",
    "append_events",
    "read_aggregate",
    "read_log",
    "registry",
]
