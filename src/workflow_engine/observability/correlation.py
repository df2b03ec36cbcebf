"""Correlation ids: taken from the request (or made), bound into every log line, sent back.

`api/edge.py` applies them to each request; this module says what an acceptable id is and
where the current one lives.
"""

from __future__ import annotations

import os
import re
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
    """A random (version 4) UUID in its usual text form, written out directly: `uuid.uuid4()`
    and its `str()` cost three times as much, on every request that brings no id."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"
