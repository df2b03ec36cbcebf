from __future__ import annotations

from workflow_engine.api.health import in_words
from workflow_engine.observability.request_stats import RequestStats


def test_percentiles_are_within_ten_percent_and_never_under() -> None:
    stats = RequestStats()
    for ms in range(1, 101):  # 1..100 ms, one each
        stats.record(200, float(ms))
    p50, p95 = stats.percentile(0.5), stats.percentile(0.95)
    assert p50 is not None
    assert 50 <= p50 <= 55
    assert p95 is not None
    assert 95 <= p95 <= 104.5


def test_counts_requests_and_server_errors() -> None:
    stats = RequestStats()
    stats.record(200, 1)
    stats.record(404, 1)
    stats.record(503, 1)
    snapshot = stats.snapshot()
    assert (snapshot.requests, snapshot.errors) == (3, 1)


def test_empty_stats_have_no_percentiles() -> None:
    assert RequestStats().snapshot().p50_ms is None


def test_extreme_latencies_land_in_the_edge_buckets() -> None:
    stats = RequestStats()
    stats.record(200, 0.0)
    stats.record(200, 10**9)
    assert stats.percentile(0.01) == 0.1
    p100 = stats.percentile(1.0)
    assert p100 is not None
    assert p100 > 15 * 60 * 1000


def test_uptime_in_words() -> None:
    assert in_words(0) == "0 seconds"
    assert in_words(1) == "1 second"
    assert in_words(93784) == "1 day, 2 hours, 3 minutes, 4 seconds"
    assert in_words(3600) == "1 hour"
