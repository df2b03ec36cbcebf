"""The garbage collector in a long-running process: what start-up loaded is left out of its scans.

A full collection walks every container object the process holds. After start-up that is a few
hundred thousand of them — modules, classes, functions, FastAPI's and SQLAlchemy's structures,
none of which will ever be garbage — and walking them took about 110 ms on the benchmark
machine, every few seconds under load: every request in flight waited that long
(docs/benchmarks.md). `gc.freeze()` moves the objects alive at that moment to a permanent
generation that collections skip, so a full collection walks only what was made since.

Frozen objects are never freed, so the freeze is undone when the process stops serving
(`thawed`): a process that builds and stops several apps — the tests, an embedding program —
gets its memory back.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_after_startup() -> Iterator[None]:
    """Entered once the process has started its services: freezes what exists; undoes it on
    leaving."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
