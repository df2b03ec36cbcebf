"""A demo service's records: seeded from the package, changed in the data directory.

The first use copies the seed (`data/<name>.json`) to `DATA_DIR/demo/<name>.json`; changes
are written back atomically (a temporary file renamed over the old one), so they survive a
restart and a half-written file is never read. Every tool call is appended to
`DATA_DIR/demo/<name>.calls.jsonl`. Several server processes each write whole files: the last
writer wins, which is fine for a demo and said in docs/workflows.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class DemoStore:
    def __init__(self, name: str, data_dir: Path) -> None:
        self.name = name
        self.directory = data_dir / "demo"
        self.path = self.directory / f"{name}.json"
        self.calls = self.directory / f"{name}.calls.jsonl"
        self._lock = asyncio.Lock()

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            seed = resources.files("workflow_engine.demo").joinpath("data", f"{self.name}.json")
            self._write(json.loads(seed.read_text(encoding="utf-8")))
        document: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return document

    async def change(self, edit: Callable[[dict[str, Any]], T]) -> T:
        """Apply `edit` to the records and save them; returns what `edit` returned."""
        async with self._lock:
            document = self.read()
            result = edit(document)
            self._write(document)
            return result

    def log_call(self, tool: str, arguments: dict[str, Any], outcome: str) -> None:
        entry = {"at": datetime.now(UTC).isoformat(), "tool": tool, "arguments": arguments,
                 "outcome": outcome}  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.calls.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _write(self, document: dict[str, Any]) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{self.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, ensure_ascii=False, indent=2)
            Path(temporary).replace(self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def labelled(record: dict[str, Any]) -> dict[str, Any]:
    """A record as tools return it: marked as demo data."""
    return {**record, "demo": True}
