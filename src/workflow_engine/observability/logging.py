"""Structured logging: JSON lines in production, readable lines in development.

Everything is routed through structlog — our own loggers and the standard-library ones
(uvicorn, alembic, sqlalchemy) — so every line carries the same fields, including the
correlation id bound by the edge middleware (`api/edge.py`). A redaction step masks secrets by
key name, so a token or password passed as a log field never reaches the output.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from typing import Any

import structlog
from structlog.types import EventDict, Processor

from workflow_engine.observability import tracing

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_HANDLER_NAME = "workflow_engine"
_SECRET_KEYS = ("password", "secret", "token", "authorization", "api_key", "cookie")


@lru_cache(maxsize=4096)
def _is_secret(key: str) -> bool:
    # Lines repeat the same few keys: deciding each once keeps redaction off the request path.
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def _redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    for key in event_dict:
        if _is_secret(key):
            event_dict[key] = "**********"
    return event_dict


def _drop_color_message(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in an extra field.
    event_dict.pop("color_message", None)
    return event_dict


def _add_trace_ids(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    ids = tracing.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def configure_logging(level: str, fmt: str) -> None:
    """Set up structlog and the standard library's root logger. Safe to call again."""
    numeric_level = _LEVELS.get(level, logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        _redact_secrets,
        _add_trace_ids,
    ]
    renderer: Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: rich's formatter would print local variables, secrets included.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        # A line below the level is dropped before any processor runs (the standard library
        # would drop it only after all of them); `shared` also formats foreign records, which
        # the standard library has already filtered.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    # Replace only the handler an earlier call installed: handlers that others attached to the
    # root logger (an embedding application's, a test runner's) keep working.
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our access line replaces uvicorn's (which would log raw paths with ids and queries).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # Alembic narrates every context it opens, health checks included; `migrate` says what ran.
    logging.getLogger("alembic").setLevel(max(numeric_level, logging.WARNING))
