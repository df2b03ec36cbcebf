"""Tracing says in one line whether it is on, and why not when it is off."""

from __future__ import annotations

import subprocess
import sys

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
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.splitlines() == [
        "tracing is off: the `monitoring` extra (OpenTelemetry SDK) is not installed",
        "None None",
    ]
