"""What the event log can store identically on SQLite and PostgreSQL.

PostgreSQL refuses `\\u0000` in text and JSON and has no JSON `NaN`/`Infinity`, while SQLite (and
Python's `json`) accept them (pitfall 7 in docs/architecture.md). Checking here turns what
would be a database error — a 500 — into a precise `InvalidInput`, on both databases alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from workflow_engine.errors import InvalidInput

NAME_LIMITS = {"aggregate_type": 100, "aggregate_id": 200, "event_type": 200}
MAX_DEPTH = 64


def check_name(field: str, value: str) -> None:
    limit = NAME_LIMITS[field]
    if not value or len(value) > limit:
        raise InvalidInput(f"{field} must be 1 to {limit} characters")
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain the NUL character")


def check_document(field: str, document: Mapping[str, Any]) -> None:
    """Refuse NUL characters, non-finite numbers and absurd nesting anywhere in `document`."""
    _check(document, field, 0)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{path} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{path} contains the NUL character (\\u0000)")
        if not _encodable(value):
            raise InvalidInput(f"{path} contains a lone surrogate, which is not valid Unicode")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is {value}, which JSON cannot store")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{path} has a non-string key")
            _check(key, f"{path} key", depth + 1)
            _check(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    elif value is not None and not isinstance(value, bool | int):
        raise InvalidInput(f"{path} holds a {type(value).__name__}, which is not JSON")


def storable_document(value: Any, depth: int = 0) -> Any:
    """`value` made storable: text as `storable_text` makes it, non-finite numbers and what
    nests too deep or is not JSON replaced by null (for documents from code we do not control,
    such as what an MCP tool returned)."""
    if isinstance(value, str):
        return storable_text(value)
    if depth >= MAX_DEPTH or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, Mapping):
        return {storable_text(str(k)): storable_document(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_document(item, depth + 1) for item in value]
    return value if value is None or isinstance(value, bool | int | float) else None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(text: str) -> str:
    """`text` made storable anywhere: NUL dropped, lone surrogates replaced (for messages from
    code we do not control, such as node exceptions and logs)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
