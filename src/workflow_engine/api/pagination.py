"""Keyset pagination: `limit` plus an opaque `cursor` that names the last item of the page."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query, Response

from workflow_engine.api.validation import is_storable_text
from workflow_engine.errors import InvalidInput
from workflow_engine.schemas.pages import Page as Page  # the routers import it from here

T = TypeVar("T")
R = TypeVar("R")

MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` of the previous page."),
]


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


_INT64_MAX = 2**63 - 1


def decode_cursor(cursor: str | None, **fields: type[int] | type[str]) -> dict[str, Any] | None:
    """The key a cursor names, or None for the first page; 422 for anything we did not issue.

    `fields` names each member and its type (`int` within int64, or `str` of storable text),
    so a forged cursor can never carry a value the database would choke on.
    """
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(_FOREIGN_CURSOR) from None
    if not isinstance(key, dict) or set(key) != set(fields):
        raise InvalidInput(_FOREIGN_CURSOR)
    for name, kind in fields.items():
        value = key[name]
        if kind is int:
            valid = type(value) is int and 0 <= value <= _INT64_MAX
        else:
            valid = is_storable_text(value) and len(value) <= 512
        if not valid:
            raise InvalidInput(_FOREIGN_CURSOR)
    return key


_FOREIGN_CURSOR = "the cursor is not one this server issued"


def page_of(
    found: Sequence[R],
    limit: int,
    view: Callable[[R], T],
    cursor_key: Callable[[R], dict[str, Any]],
) -> Page[T]:
    """The first `limit` rows as a page. Callers fetch `limit + 1` rows: the extra one only
    says whether another page exists, and the cursor names the last row shown."""
    shown = found[:limit]
    next_cursor = encode_cursor(cursor_key(shown[-1])) if len(found) > limit else None
    return Page[T](items=[view(row) for row in shown], next_cursor=next_cursor)


def page_response(items: str, next_cursor: str | None) -> Response:
    """A `Page` whose items the database rendered as a JSON array, answered as they are: the
    body the `Page` model would give, without building it (the route keeps the model as its
    `response_model`, for the OpenAPI document)."""
    body = f'{{"items":{items},"next_cursor":{json.dumps(next_cursor)}}}'
    return Response(body, media_type="application/json")


def decode_name_cursor(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    """The (name, id) key of a list ordered by name then id (see `decode_cursor`)."""
    key = decode_cursor(cursor, name=str, id=str)
    if key is None:
        return None
    try:
        return key["name"], uuid.UUID(key["id"])
    except ValueError:
        raise InvalidInput("the cursor is not one this server issued") from None
