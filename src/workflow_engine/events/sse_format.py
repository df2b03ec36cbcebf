"""Server-sent events as bytes: the wire format of the API's live streams.

A message is `id:`, `event:` and one `data:` line per line of its data, then an empty line;
a comment (a keep-alive) is a line starting with `:`. Lines end with CRLF, as they have since
the streams began (any of CR, LF and CRLF ends a line for a client). Line breaks inside an id
or an event name are dropped: they would end the field early.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def message(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    lines = []
    if id is not None:
        lines.append(f"id: {_LINE_BREAK.sub('', id)}\r\n")
    if event is not None:
        lines.append(f"event: {_LINE_BREAK.sub('', event)}\r\n")
    lines.extend(f"data: {line}\r\n" for line in _LINE_BREAK.split(data))
    lines.append("\r\n")
    return "".join(lines).encode()


def comment(text: str) -> bytes:
    return "".join(f": {line}\r\n" for line in _LINE_BREAK.split(text)).encode() + b"\r\n"
