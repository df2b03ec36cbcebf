"""The workflow engine: definitions, runs, the scheduling rules, the task queue and the worker."""
