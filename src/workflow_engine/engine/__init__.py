"""The workflow engine: definitions, runs, the task queue and the worker."""

from workflow_engine.engine import (  # noqa: F401  (they register the run read models)
    run_logs,
    run_projection,
)
