"""Correlation ids: taken from the request (or made), bound into every log line, sent back.

`api/edge.py` applies them to each request; this module says what an acceptable id is and
where the current one lives.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from contextvars import ContextVar

HEADER = "X-Correlation-ID"
_ACCEPTED_HEADERS = (b"x-correlation-id", b"x-request-id")
# Ids end up in logs and headers: accept only short, printable, header-safe tokens.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    return correlation_id_var.get()


def incoming_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The id the client sent: `X-Correlation-ID` first, else `X-Request-ID`, when valid."""
    found: dict[bytes, bytes] = dict(headers)
    for name in _ACCEPTED_HEADERS:
        raw = found.get(name)
        if raw is None:
            continue
        value = raw.decode("latin-1").strip()
        if _VALID_ID.match(value):
            return value
    return None


def new_id() -> str:
    return str(uuid.uuid4())
