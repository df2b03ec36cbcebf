"""OpenTelemetry tracing, when the `monitoring` extra is installed and `TRACING_ENABLED`.

The rest of the code uses only this module's small surface — `span()`, `inject()`,
`current_ids()` — which does nothing when tracing is off or OpenTelemetry is missing, so no
other module imports OpenTelemetry.

What is traced: HTTP requests (FastAPI instrumentation; health, metrics and the demo
services left out), database statements (SQLAlchemy instrumentation), outgoing httpx calls
(`http.request`, the OpenAI-compatible provider), every step attempt, LLM calls (GenAI
semantic conventions) and MCP tool calls. A trigger's context travels with the run's tasks
(`tasks.trace_context`, W3C trace context), so the worker's step spans — in this process or
another — join the trace of the request that started the run.

Export: OTLP over HTTP, configured by the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...). With no endpoint set, tracing
stays off (and says so): spans nobody receives would only cost time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from opentelemetry import propagate, trace

logger = structlog.get_logger(__name__)

TRACER_NAME = "workflow_engine"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Matched (re.search) against `scheme://host/path`: anchored on the path, so that a host
# name holding these words, or a route of ours that merely contains them, is still traced.
EXCLUDED_URLS = ",".join((
    r"^https?://[^/]+/health(/detailed)?$",
    r"^https?://[^/]+/metrics$",
    r"^https?://[^/]+/demo/mcp/",
))  # fmt: skip
URL_ATTRIBUTES = ("http.url", "url.full")

_enabled = False


def setup(enabled: bool, environ: Mapping[str, str] | None = None) -> str:
    """Install the tracer provider once per process; returns what happened, in words."""
    global _enabled, propagate, trace
    environ = os.environ if environ is None else environ
    if not enabled:
        return "tracing is off (TRACING_ENABLED=false)"
    if _enabled:
        return "tracing is on"
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        # Spans nobody receives would cost every request and statement for nothing.
        return "tracing is off: set OTEL_EXPORTER_OTLP_ENDPOINT to export traces over OTLP"
    # Imported only now: a process with tracing off never loads OpenTelemetry (a few MB).
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:  # the API may be there (FastAPI brings it), the SDK is the extra's
        return "tracing is off: the `monitoring` extra (OpenTelemetry SDK) is not installed"

    from workflow_engine.version import __version__

    resource = Resource.create(
        {"service.name": environ.get("OTEL_SERVICE_NAME", "workflow-engine"),
         "service.version": __version__}
    )  # fmt: skip
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=resource, sampler=_sampler())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider, request_hook=_client_url, async_request_hook=_async_client_url
    )
    _KINDS.update(_span_kinds())
    _enabled = True
    return "tracing is on: spans go to the OTLP endpoint in OTEL_EXPORTER_OTLP_*"


def is_on() -> bool:
    """Whether `setup` installed the tracer provider in this process."""
    return _enabled


def flush(timeout_millis: int = 5000) -> None:
    """Send spans still buffered (when a server or worker stops)."""
    if _enabled:
        with contextlib.suppress(Exception):
            trace.get_tracer_provider().force_flush(timeout_millis)  # type: ignore[attr-defined]


def instrument_app(app: Any) -> None:
    if _enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"],
            server_request_hook=_server_url,
        )  # fmt: skip


def without_query(url: str) -> str:
    """`url` with no credentials, query or fragment: what spans may keep of a URL. A query can
    carry a secret (`?api_key=`), and a span goes to whoever runs the trace backend."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def _server_url(span: Any, scope: Mapping[str, Any]) -> None:
    if not (span.is_recording() and scope.get("query_string")):
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, without_query(str(attributes[key])))
    if "http.target" in attributes:
        span.set_attribute("http.target", scope.get("path", ""))
    if "url.query" in attributes:
        span.set_attribute("url.query", "REDACTED")


def _client_url(span: Any, request: Any) -> None:
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, without_query(str(request.url)))


async def _async_client_url(span: Any, request: Any) -> None:
    _client_url(span, request)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """No spans and no trace headers for the calls inside: the registry's probes, made on a
    timer to services tenants registered, are neither part of a trace nor theirs to see."""
    if not _enabled:
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def instrument_engine(sync_engine: Any) -> None:
    """Trace the statements of the process's connection pool. The instrumentor is one per
    process and takes the first engine it is given: a server or worker has one pool."""
    if _enabled:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
            return

        # Its declared range stops before SQLAlchemy 2.1, which it handles all the same (the
        # engine events it uses are unchanged); the tracing test checks the spans.
        SQLAlchemyInstrumentor().instrument(engine=sync_engine, skip_dep_check=True)


def inject() -> dict[str, str] | None:
    """The current trace context as W3C headers, to store with work done later."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A span around the block (a no-op object when tracing is off). `parent`: a context
    from `inject()`, for work that continues a trace begun elsewhere. An exception ending
    the block marks the span as an error."""
    if not _enabled:
        yield _NoSpan()
        return
    context = propagate.extract(dict(parent)) if parent else None
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=context, kind=_KINDS[kind], attributes=dict(attributes or {}),
        record_exception=True, set_status_on_exception=True,
    ) as current:  # fmt: skip
        yield current


def annotate(attributes: Mapping[str, Any], error: str | None = None) -> None:
    """Add attributes to the current span, and mark it failed when `error` says why (a step
    or call that failed without an exception escaping the span)."""
    if not _enabled:
        return
    from opentelemetry.trace import Status, StatusCode

    current = trace.get_current_span()
    current.set_attributes(dict(attributes))
    if error is not None:
        current.set_status(Status(StatusCode.ERROR, error))


def current_ids() -> tuple[str, str] | None:
    """The active span's trace and span ids in hex, for log lines."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _sampler() -> Any:
    """Everything in a trace, but no trace that is only a database statement or an outgoing
    call: the worker's claim polls, the checker's reads and the registry's probes would
    otherwise each make a trace of their own."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )
    from opentelemetry.trace import SpanKind

    class NoLoneStatements(Sampler):
        def should_sample(  # type: ignore[no-untyped-def]
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
            trace_state=None,
        ):  # fmt: skip
            if attributes and ("db.system" in attributes or "db.system.name" in attributes):
                return SamplingResult(Decision.DROP)
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "NoLoneStatements"

    return ParentBased(root=NoLoneStatements())


class _NoSpan:
    def set_attribute(self, _key: str, _value: Any) -> None:
        return None

    def set_attributes(self, _attributes: Mapping[str, Any]) -> None:
        return None


def _span_kinds() -> dict[str, Any]:
    from opentelemetry.trace import SpanKind

    return {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT, "consumer": SpanKind.CONSUMER}


_KINDS: dict[str, Any] = {}  # filled by setup() when tracing is on
