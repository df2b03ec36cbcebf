"""The server's built-in read models, registered explicitly by whoever builds a process.

Every process that appends events — the API server, a `workflow-engine worker`, the CLI's
`events replay`, an embedding application — calls `register_read_models()` before it starts,
so a read model is never folded in one process and missed in another because a module
happened not to be imported there.
"""

from __future__ import annotations

from workflow_engine.engine.run_logs import RunLogsProjection
from workflow_engine.engine.run_projection import RunsProjection
from workflow_engine.events.catalogue import AggregateCatalogue
from workflow_engine.events.projections import Projection, Projections, registry


def built_in_read_models() -> tuple[Projection, ...]:
    """In fold order: the aggregate catalogue, then runs and steps, then run logs."""
    return (AggregateCatalogue(), RunsProjection(), RunLogsProjection())


def register_read_models(projections: Projections = registry) -> Projections:
    """Register the built-in read models that are not registered yet (safe to call again)."""
    known = {projection.name for projection in projections}
    for projection in built_in_read_models():
        if projection.name not in known:
            projections.register(projection)
    return projections
