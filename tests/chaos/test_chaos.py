"""The bounded CI slice of the chaos suite: the harness of `make chaos` with fewer runs.

120 runs of the five-step fan-out workflow, triggered over HTTP while a worker is SIGKILLed
every 2 s, with the database stopped and started again halfway through. It needs the PostgreSQL
server binaries (and, as root, the `postgres` user) to make a private cluster it can stop;
without them it is skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.__main__ import (
    ROOT,
    Answer,
    Options,
    Report,
    arguments,
    cluster_unavailable,
    run_chaos,
)
from tests.conftest import IN_CI

RUNS = 120


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_runs_survive_worker_kills_and_a_database_restart(
    installed_bin: Path, tmp_path: Path
) -> None:
    missing = cluster_unavailable()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true, and the chaos suite cannot run: {missing}")
        pytest.skip(missing)
    options = Options(runs=RUNS, rate=4, bin_dir=installed_bin, work=tmp_path, drain_timeout=150)
    report = asyncio.run(run_chaos(options))
    print(report.render())
    # The chaos happened: workers died under load, and the outage met requests in flight.
    assert report.kills >= 5
    assert not report.outage_skipped
    assert sum(report.outage_answers.values()) > 0
    # What a user was promised.
    assert report.runs_accepted == RUNS
    assert report.accepted_lost == 0
    assert report.runs_unaccounted == 0
    assert report.runs_completed == RUNS
    assert report.runs_stuck == 0
    assert report.wrong_outputs == 0
    assert report.step_outcomes_duplicated == 0
    assert report.step_completions_duplicated == 0
    assert report.outage_bad_answers == 0
    assert report.server_errors == 0
    assert report.unanswered == 0
    assert report.recovery_first_trigger_seconds is not None
    assert report.recovery_backlog_seconds is not None
    assert report.failures() == []


def _clean_report() -> Report:
    return Report(
        seed=1, runs_requested=2, workers=3, kill_every=2, lease_seconds=5,
        database="a private PostgreSQL cluster", runs_accepted=2, runs_in_database=2,
        runs_completed=2, outage_answers={"503 problem+json Retry-After": 4},
    )  # fmt: skip


def test_a_clean_report_has_no_failures() -> None:
    assert _clean_report().failures() == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"accepted_lost": 1}, "1 accepted triggers have no run"),
        ({"runs_stuck": 1, "runs_completed": 1}, "1 runs stuck"),
        ({"step_outcomes_duplicated": 2}, "2 step outcomes recorded twice"),
        ({"server_errors": 1}, "1 answers were 5xx other than 503"),
        ({"unanswered": 3}, "3 requests got no answer in time"),
        ({"outage_bad_answers": 1}, "1 answers during the outage were not 503 problems"),
        ({"outage_answers": {}}, "no request was answered during the outage"),
    ],
)
def test_a_broken_promise_fails_the_report(change: dict[str, object], expected: str) -> None:
    report = _clean_report()
    for name, value in change.items():
        setattr(report, name, value)
    assert any(expected in failure for failure in report.failures()), report.failures()


@pytest.mark.parametrize(
    ("answer", "clean"),
    [
        (Answer("trigger", 0, 0, 503, problem=True, retry_after=True), True),
        (Answer("trigger", 0, 0, 503, problem=True, retry_after=False), False),
        (Answer("status", 0, 0, 503, problem=False, retry_after=True), False),
        (Answer("status", 0, 0, 500, problem=True, retry_after=False), False),
        (Answer("status", 0, 0, None, error="ReadTimeout"), False),
    ],
)
def test_only_a_503_problem_with_retry_after_answers_an_outage(answer: Answer, clean: bool) -> None:
    assert answer.clean_outage_answer is clean


def test_every_option_of_the_harness_is_documented() -> None:
    page = (ROOT / "docs" / "reliability.md").read_text()
    options = [o for action in arguments()._actions for o in action.option_strings]
    missing = [o for o in options if o not in ("-h", "--help") and f"`{o}`" not in page]
    assert missing == []
