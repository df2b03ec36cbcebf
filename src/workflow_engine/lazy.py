"""Loading a large optional package on first use, from a running event loop.

Packages that only some deployments use (the MCP SDK above all: about 20 MB and half a second
to import) are imported where they are first needed, not at start-up; docs/architecture.md
("What is loaded when") lists them. When that first use happens in a serving process, an
import on the event loop would stall every request and step for as long as it takes, so it
runs in a thread instead.
"""

from __future__ import annotations

import asyncio
import importlib

_imported: set[str] = set()


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


async def import_off_loop(*modules: str) -> None:
    """Import `modules` without blocking the event loop (a no-op when this imported them
    before). An ImportError is raised here, as the import statement would raise it."""
    missing = tuple(module for module in modules if module not in _imported)
    if missing:
        # Not `sys.modules`: a module another thread is still importing is already there.
        # In the thread, Python's per-module import locks make this import wait for that one.
        await asyncio.to_thread(_import_all, missing)
        _imported.update(missing)
