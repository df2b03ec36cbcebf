"""Multiprocess metrics: a killed process's live gauges leave the sum, and a directory named
in PROMETHEUS_MULTIPROC_DIR but not made yet is made, not a crash at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import python_output
from workflow_engine.observability import metrics

KILLED_MID_REQUEST = """
import os
from workflow_engine.observability import metrics
metrics.http_in_flight.inc(3)
metrics.sse_subscribers.inc()
os._exit(0)  # as SIGKILL would: no lifespan end, no cleanup
"""
RENDER = """
import sys
from workflow_engine.observability import metrics
sys.stdout.write(metrics.render().decode())
"""


def _python(code: str, directory: Path) -> str:
    return python_output(code, {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)})


def _gauges(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("http_requests_in_flight", "sse_subscribers")
    }


def test_a_killed_process_leaves_the_live_gauges(tmp_path: Path) -> None:
    _python(KILLED_MID_REQUEST, tmp_path)
    assert list(tmp_path.glob("gauge_livesum_*.db"))  # what it left behind

    assert _gauges(_python(RENDER, tmp_path)) == {
        "http_requests_in_flight": 0.0,
        "sse_subscribers": 0.0,
    }


def test_a_directory_not_made_yet_is_made(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    assert "http_requests_in_flight" in _python(RENDER, directory)
    assert directory.is_dir()


ALIVE_AND_COUNTING = """
import sys, time
from workflow_engine.observability import metrics
metrics.events_appended.labels("order").inc()
print("counted", flush=True)
time.sleep(60)
"""


def test_a_server_start_clears_the_gone_and_keeps_the_running(tmp_path: Path) -> None:
    _python(KILLED_MID_REQUEST, tmp_path)  # gone
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    running = subprocess.Popen([sys.executable, "-c", ALIVE_AND_COUNTING], env=env,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert running.stdout is not None
        assert running.stdout.readline().strip() == "counted"
        metrics.clear_directory(tmp_path)
        left = {file.name for file in tmp_path.glob("*.db")}
        assert left
        assert all(name.endswith(f"_{running.pid}.db") for name in left), left
    finally:
        running.kill()
        running.wait()
