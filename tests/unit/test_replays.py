"""Which steps a replay runs again, which it starts with, and how its trigger folds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.replays import first_steps, runs_again
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.run_fold import FoldedEvent, fold_events, new_run

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _definition(*steps: dict[str, Any]) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"name": "g", "steps": list(steps)})


def _step(step_id: str, *needs: str, **more: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": "transform", "needs": list(needs), **more}


# a → b → d ← c, d → e; f on its own
GRAPH = _definition(
    _step("a"), _step("b", "a"), _step("c"), _step("d", "b", "c"), _step("e", "d"), _step("f")
)
ALL = {"a", "b", "c", "d", "e", "f"}


def test_the_step_and_every_step_depending_on_it_run_again() -> None:
    assert runs_again(GRAPH, "b", ALL) == {"b", "d", "e"}
    assert runs_again(GRAPH, "a", ALL) == {"a", "b", "d", "e"}
    assert runs_again(GRAPH, "f", ALL) == {"f"}


def test_steps_that_did_not_complete_run_again_with_what_depends_on_them() -> None:
    # c failed (with continue_on_error, so d ran and completed): d needs it, so d runs again.
    assert runs_again(GRAPH, "e", ALL - {"c"}) == {"c", "d", "e"}
    assert runs_again(GRAPH, "f", ALL - {"a"}) == {"a", "b", "d", "e", "f"}


def test_a_run_starts_with_the_steps_whose_needs_are_all_reused() -> None:
    steps = [step.model_dump(by_alias=True) for step in GRAPH.steps]
    assert first_steps(steps, ()) == ["a", "c", "f"]
    assert first_steps(steps, {"a", "c", "f"}) == ["b"]
    assert first_steps(steps, {"a", "b", "c", "f"}) == ["d"]


def test_a_replays_trigger_folds_its_reused_steps_completed_without_an_attempt() -> None:
    original = uuid.uuid4()
    outputs = {"a": {"n": 1}, "c": None}
    data = {
        "definition": GRAPH.document(), "input": {},
        "replay": {"of": str(original), "from_step": "b", "reused": ["a", "c", "f"],
                   "outputs": {**outputs, "f": [1, 2]}},
    }  # fmt: skip
    run = new_run(uuid.uuid4(), uuid.uuid4(), FoldedEvent(RunEvent.triggered, data, {}, 1, T0))

    assert (run.replay_of_run_id, run.replay_from_step) == (original, "b")
    assert (run.status, run.steps_done, run.steps_total) == ("queued", 3, 6)
    a, b = run.step("a"), run.step("b")
    assert (a.status, a.attempts, a.output, a.started_at, a.finished_at) == (
        "completed", 0, {"n": 1}, None, T0
    )  # fmt: skip
    assert run.step("c").output is None  # a null output is reused as null
    assert (b.status, b.attempts) == ("pending", 0)
    run = fold_events(run, [(RunEvent.step_started, {"step_id": "b", "attempt": 1})], T0)
    assert (run.status, run.step("b").status) == ("running", "running")
