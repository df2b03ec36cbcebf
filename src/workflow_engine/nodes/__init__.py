"""Node types: what a step's `uses` names. Core ones register on import."""

from workflow_engine.nodes import core  # noqa: F401  (registers the core node types)
from workflow_engine.nodes.registry import (
    FatalStepError,
    NodeContext,
    StepError,
    node,
    registry,
)

__all__ = ["FatalStepError", "NodeContext", "StepError", "node", "registry"]
