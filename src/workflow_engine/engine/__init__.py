"""The workflow engine: definitions, runs, the task queue and the worker."""

from workflow_engine.engine import run_projection  # noqa: F401  (registers the run read models)
