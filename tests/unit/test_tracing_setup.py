"""Tracing says in one line whether it is on, and why not when it is off."""

from __future__ import annotations

from tests.conftest import python_output
from workflow_engine.observability import tracing


def test_switched_off_it_says_so() -> None:
    assert tracing.setup(False) == "tracing is off (TRACING_ENABLED=false)"
    assert tracing.setup(True, {}) == (
        "tracing is off: set OTEL_EXPORTER_OTLP_ENDPOINT to export traces over OTLP"
    )


def test_without_opentelemetry_it_says_which_extra_is_missing() -> None:
    # A fresh interpreter where `import opentelemetry` fails, as without the extra.
    script = (
        "import os, sys; sys.modules['opentelemetry.sdk'] = None\n"
        "os.environ['OTEL_EXPORTER_OTLP_ENDPOINT'] = 'http://127.0.0.1:9'\n"
        "from workflow_engine.observability import tracing\n"
        "print(tracing.setup(True))\n"
        "with tracing.span('x') as s: s.set_attribute('a', 1)\n"
        "print(tracing.inject(), tracing.current_ids())\n"
    )
    assert python_output(script).splitlines() == [
        "tracing is off: the `monitoring` extra (OpenTelemetry SDK) is not installed",
        "None None",
    ]


def test_spans_keep_no_credentials_query_or_fragment_of_a_url() -> None:
    assert tracing.without_query("https://user:pw@api.example:8443/v1/x?api_key=s#frag") == (
        "https://api.example:8443/v1/x"
    )
    assert tracing.without_query("http://127.0.0.1/health") == "http://127.0.0.1/health"


def test_exclusions_are_the_paths_not_words_in_the_url() -> None:
    from opentelemetry.util.http import parse_excluded_urls

    excluded = parse_excluded_urls(tracing.EXCLUDED_URLS)
    for url in ("http://api:8080/health", "http://api:8080/health/detailed",
                "http://api:8080/metrics", "http://api:8080/demo/mcp/notion/mcp"):  # fmt: skip
        assert excluded.url_disabled(url), url
    for url in ("http://healthcare.example/api/v1/auth/me",
                "http://metrics-gw:8080/api/v1/workflows/trigger",
                "http://api:8080/api/v1/registry/health"):  # fmt: skip
        assert not excluded.url_disabled(url), url


def test_outgoing_calls_alone_make_no_trace() -> None:
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import SpanKind

    sampler = tracing._sampler()
    probe = sampler.should_sample(None, 1, "GET", kind=SpanKind.CLIENT)
    request = sampler.should_sample(None, 2, "GET /api/v1/auth/me", kind=SpanKind.SERVER)
    assert probe.decision == Decision.DROP
    assert request.decision == Decision.RECORD_AND_SAMPLE
