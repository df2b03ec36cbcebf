"""The run read model's fold of a durable wait: the step waits with its wake time, and the run
is `waiting` only while nothing else of it runs or is ready."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from workflow_engine.engine.records import RunRecord
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.run_fold import FoldedEvent, fold, fold_events, new_run

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WAKE = T0 + timedelta(minutes=5)


def triggered(*steps: dict[str, object]) -> RunRecord:
    definition = {"name": "f", "version": 1, "steps": list(steps)}
    event = FoldedEvent(RunEvent.triggered, {"definition": definition, "input": {}}, {}, 1, T0)
    return new_run(uuid.uuid4(), uuid.uuid4(), event)


def waited(step: str, attempt: int = 1) -> tuple[str, dict[str, object]]:
    return RunEvent.step_waiting, {"step_id": step, "attempt": attempt, "until": WAKE.isoformat()}


def started(step: str) -> tuple[str, dict[str, object]]:
    return RunEvent.step_started, {"step_id": step, "attempt": 1}


def test_a_run_waits_while_its_only_active_step_does() -> None:
    run = triggered({"id": "nap", "uses": "sleep"}, {"id": "after", "uses": "x", "needs": ["nap"]})
    run = fold_events(run, [started("nap"), waited("nap")], T0)
    assert run.status == "waiting"
    assert (run.step("nap").status, run.step("nap").next_attempt_at) == ("waiting", WAKE)
    run = fold_events(run, [(RunEvent.step_completed, {"step_id": "nap", "attempt": 1})], WAKE)
    assert (run.status, run.step("nap").status, run.step("nap").next_attempt_at) == (
        "running",
        "completed",
        None,
    )


def test_a_run_is_running_while_another_step_runs_or_is_ready() -> None:
    parallel = triggered({"id": "nap", "uses": "sleep"}, {"id": "work", "uses": "x"})
    assert fold_events(parallel, [started("nap"), waited("nap")], T0).status == "running"
    both = fold_events(parallel, [started("nap"), started("work"), waited("nap")], T0)
    assert both.status == "running"
    done = fold_events(both, [(RunEvent.step_completed, {"step_id": "work", "attempt": 1})], T0)
    assert done.status == "waiting"


def test_a_late_wait_never_undoes_a_finished_step() -> None:
    run = triggered({"id": "nap", "uses": "sleep"})
    run = fold_events(run, [started("nap")], T0)
    finished = fold(run, FoldedEvent(RunEvent.step_completed, {"step_id": "nap", "attempt": 1},
                                     {}, 3, WAKE))  # fmt: skip
    kind, data = waited("nap")
    assert fold(finished, FoldedEvent(kind, data, {}, 4, T0)).step("nap").status == "completed"
