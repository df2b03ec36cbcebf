"""Node types: what a step's `uses` names. Core ones register on import."""

from workflow_engine.nodes import core, http, llm, llm_agent, mcp  # noqa: F401  (they register the core node types)
from workflow_engine.nodes.registry import (
    FatalStepError,
    NodeContext,
    NodeSettings,
    StepError,
    node,
    registry,
)

__all__ = ["FatalStepError", "NodeContext", "NodeSettings", "StepError", "node", "registry"]
