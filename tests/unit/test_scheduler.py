"""The scheduling rules, one case a row: no database, no clock, no worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflow_engine.engine import scheduler
from workflow_engine.engine.definitions import WorkflowDefinition
from workflow_engine.engine.run_events import RunEvent
from workflow_engine.engine.scheduler import RunState, StepResult, StepState
from workflow_engine.engine.states import Outcome, RunStatus, StepStatus

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OK = StepResult(Outcome.completed, output={"v": 1})


def flow(*steps: dict[str, Any], timeout: float | None = None) -> WorkflowDefinition:
    document: dict[str, Any] = {"name": "f", "steps": [{"uses": "noop", **s} for s in steps]}
    if timeout is not None:
        document["timeout"] = timeout
    return WorkflowDefinition.model_validate(document)


def state(
    run: RunStatus = RunStatus.running, held: tuple[str, ...] = (), **steps: str | StepState
) -> RunState:
    """Steps given by status have made one attempt, unless still pending."""

    def step(value: str | StepState) -> StepState:
        if isinstance(value, StepState):
            return value
        return StepState(StepStatus(value), 0 if value == "pending" else 1)

    return RunState(run, {name: step(value) for name, value in steps.items()}, frozenset(held))


def failure(error_class: str = "boom", retryable: bool = True) -> StepResult:
    error = {"class": error_class, "message": "it broke", "retryable": retryable}
    return StepResult(Outcome.failed, error=error, retryable=retryable)


def kinds(decision: scheduler.Decision) -> list[tuple[RunEvent, str | None]]:
    return [(kind, data.get("step_id")) for kind, data in decision.events]


CHAIN = flow({"id": "a"}, {"id": "b", "needs": ["a"]}, {"id": "c", "needs": ["b"]})
FAN = flow(
    {"id": "start"},
    {"id": "x", "needs": ["start"]},
    {"id": "y", "needs": ["start"]},
    {"id": "join", "needs": ["x", "y"]},
)


@pytest.mark.parametrize(
    ("definition", "before", "step", "result", "events", "ready", "finished"),
    [
        pytest.param(
            CHAIN, state(a="running", b="pending", c="pending"), "a", OK,
            [(RunEvent.step_completed, "a")], ["b"], False, id="chain: a done makes b ready",
        ),
        pytest.param(
            CHAIN, state(a="completed", b="completed", c="running"), "c", OK,
            [(RunEvent.step_completed, "c")], [], True, id="chain: last step finishes the run",
        ),
        pytest.param(
            FAN, state(start="completed", x="running", y="running", join="pending"), "x", OK,
            [(RunEvent.step_completed, "x")], [], False, id="join waits for every need",
        ),
        pytest.param(
            FAN, state(start="completed", x="completed", y="running", join="pending"), "y", OK,
            [(RunEvent.step_completed, "y")], ["join"], False, id="join ready with its last need",
        ),
        pytest.param(
            FAN, state(start="running", x="pending", y="pending", join="pending"), "start",
            StepResult(Outcome.skipped, error={"reason": "`if` is false"}),
            [(RunEvent.step_skipped, "start"), (RunEvent.step_skipped, "x"),
             (RunEvent.step_skipped, "y"), (RunEvent.step_skipped, "join")],
            [], True, id="a skip cascades through everything that needs it",
        ),
        pytest.param(
            flow({"id": "a"}, {"id": "b", "needs": ["a"], "run_if_needs_skipped": True}),
            state(a="running", b="pending"), "a", StepResult(Outcome.skipped),
            [(RunEvent.step_skipped, "a")], ["b"], False, id="run_if_needs_skipped runs anyway",
        ),
        pytest.param(
            flow({"id": "a", "continue_on_error": True}, {"id": "b", "needs": ["a"]}),
            state(a="running", b="pending"), "a", failure(retryable=False),
            [(RunEvent.step_failed, "a")], ["b"], False, id="continue_on_error: a failure is met",
        ),
    ],
)  # fmt: skip
def test_settle_moves_the_run_along(
    definition: WorkflowDefinition,
    before: RunState,
    step: str,
    result: StepResult,
    events: list[tuple[RunEvent, str]],
    ready: list[str],
    finished: bool,
) -> None:
    decision = scheduler.settle(definition, before, step, 1, result, now=NOW)
    assert kinds(decision) == events
    assert decision.ready == ready
    assert decision.finished is finished
    assert decision.retry is None


def test_a_final_failure_fails_the_run_fast_and_cancels_idle_steps() -> None:
    before = state(start="completed", x="running", y="pending", join="pending", held=("y",))
    decision = scheduler.settle(FAN, before, "x", 1, failure(retryable=False), now=NOW)
    assert kinds(decision) == [
        (RunEvent.step_failed, "x"),
        (RunEvent.step_cancelled, "join"),  # y is held: its worker settles it
        (RunEvent.failed, None),
    ]
    assert decision.events[-1][1]["error"] == {
        "step_id": "x", "class": "boom", "message": "it broke", "retryable": False,
    }  # fmt: skip
    assert decision.dropped == ["join"]
    assert decision.state.status is RunStatus.failed
    assert decision.ready == []


@pytest.mark.parametrize(
    ("policy", "attempt", "result", "delay"),
    [
        ({"max_attempts": 3, "initial_delay": 2, "jitter": 0}, 1, failure(), 2.0),
        ({"max_attempts": 3, "initial_delay": 2, "jitter": 0}, 2, failure(), 4.0),
        ({"max_attempts": 5, "initial_delay": 2, "max_delay": 5, "jitter": 0}, 4, failure(), 5.0),
        ({"max_attempts": 3, "initial_delay": 2, "backoff": 3, "jitter": 0}, 2, failure(), 6.0),
        ({"max_attempts": 3, "initial_delay": 10, "jitter": 0.5}, 1, failure(), 15.0),  # jitter=1
        ({"max_attempts": 3}, 3, failure(), None),  # attempts used up
        ({"max_attempts": 3}, 1, failure(retryable=False), None),
        ({"max_attempts": 3, "retry_on": ["timeout"]}, 1, failure("boom"), None),
        ({"max_attempts": 3, "retry_on": ["timeout"], "jitter": 0}, 1, failure("timeout"), 1.0),
    ],
)
def test_retries_back_off_until_the_policy_gives_up(
    policy: dict[str, Any], attempt: int, result: StepResult, delay: float | None
) -> None:
    definition = flow({"id": "a", "retry": policy}, {"id": "b", "needs": ["a"]})
    before = state(a=StepState(StepStatus.running, attempt), b="pending")
    decision = scheduler.settle(definition, before, "a", attempt, result, now=NOW, jitter=1.0)
    if delay is None:
        assert decision.retry is None
        assert decision.state.steps["a"].status is StepStatus.failed
        assert decision.state.status is RunStatus.failed
        return
    assert decision.retry == scheduler.Retry("a", attempt + 1, NOW + timedelta(seconds=delay))
    assert decision.events == [
        (RunEvent.step_failed, {"step_id": "a", "attempt": attempt, "error": result.error,
                                "retry_at": (NOW + timedelta(seconds=delay)).isoformat()}),
    ]  # fmt: skip
    assert decision.state.steps["a"].status is StepStatus.scheduled
    assert decision.state.status is RunStatus.running
    assert decision.ready == []


def test_a_timed_out_attempt_is_a_retryable_failure() -> None:
    definition = flow({"id": "a", "timeout": 1, "retry": {"max_attempts": 2, "jitter": 0}})
    timed_out = failure("timeout")
    first = scheduler.settle(definition, state(a="running"), "a", 1, timed_out, now=NOW)
    assert first.retry is not None
    assert first.retry.attempt == 2
    second_state = state(a=StepState(StepStatus.running, 2))
    second = scheduler.settle(definition, second_state, "a", 2, timed_out, now=NOW)
    assert second.retry is None
    assert kinds(second)[-1] == (RunEvent.failed, None)


def test_an_outcome_after_a_cancel_is_recorded_as_cancelled_and_ends_the_run() -> None:
    before = state(RunStatus.cancelling, a="running", b="cancelled", c="cancelled")
    decision = scheduler.settle(CHAIN, before, "a", 1, OK, now=NOW)
    assert kinds(decision) == [(RunEvent.step_completed, "a"), (RunEvent.cancelled, None)]
    assert decision.state.status is RunStatus.cancelled


def test_a_cancelled_attempt_of_a_failed_run_records_nothing_more() -> None:
    before = state(RunStatus.failed, a="running", b="cancelled", c="cancelled")
    decision = scheduler.settle(CHAIN, before, "a", 1, StepResult(Outcome.cancelled), now=NOW)
    assert kinds(decision) == [(RunEvent.step_cancelled, "a")]
    assert decision.state.status is RunStatus.failed


def test_cancel_stops_idle_steps_and_waits_for_held_ones() -> None:
    held = scheduler.cancel(FAN, state(start="completed", x="running", y="pending",
                                       join="pending", held=("x",)), "alice")  # fmt: skip
    assert kinds(held) == [
        (RunEvent.cancel_requested, None),
        (RunEvent.step_cancelled, "y"),
        (RunEvent.step_cancelled, "join"),
    ]
    assert held.state.status is RunStatus.cancelling
    idle = scheduler.cancel(CHAIN, state(RunStatus.queued, a="pending", b="pending",
                                         c="pending"), "alice")  # fmt: skip
    assert kinds(idle)[-1] == (RunEvent.cancelled, None)
    assert idle.events[-1][1]["error"]["message"] == "cancelled by alice"
    assert idle.state.status is RunStatus.cancelled


def test_a_deadline_fails_the_run() -> None:
    before = state(a="running", b="pending", c="pending", held=("a",))
    decision = scheduler.fail(CHAIN, before, {"class": "timeout", "message": "too long"})
    assert kinds(decision) == [
        (RunEvent.step_cancelled, "b"),
        (RunEvent.step_cancelled, "c"),
        (RunEvent.failed, None),
    ]


def test_an_attempt_settled_twice_records_no_second_outcome() -> None:
    before = state(a="cancelled", b="cancelled", c="cancelled")
    decision = scheduler.settle(CHAIN, before, "a", 1, OK, now=NOW)
    assert decision.events == []
    assert decision.counted is None


def test_the_fold_never_moves_a_step_back_to_an_earlier_attempt() -> None:
    two = state(a=StepState(StepStatus.running, 2))
    late = two.apply(RunEvent.step_failed, {"step_id": "a", "attempt": 1, "error": {}})
    assert late == two
    started = state(RunStatus.queued, a="pending").apply(
        RunEvent.step_started, {"step_id": "a", "attempt": 1}
    )
    assert started.status is RunStatus.running
    assert started.steps["a"] == StepState(StepStatus.running, 1)


def test_a_step_ready_before_the_decision_is_not_enqueued_again() -> None:
    # x and y had no needs: both got their tasks at the trigger; x finishing changes nothing
    # for y, whose task is waiting or running.
    definition = flow({"id": "x"}, {"id": "y"}, {"id": "join", "needs": ["x", "y"]})
    decision = scheduler.settle(
        definition, state(x="running", y="pending", join="pending"), "x", 1, OK, now=NOW
    )
    assert decision.ready == []
    assert decision.state.steps["y"].status is StepStatus.pending


def test_a_waiting_step_completes_then_frees_its_dependants_and_a_cancel_settles_it() -> None:
    waiting = state(a="running", b="pending", c="pending").apply(
        RunEvent.step_waiting, {"step_id": "a", "attempt": 1, "until": NOW.isoformat()}
    )
    assert waiting.steps["a"] == StepState(StepStatus.waiting, 1)
    woke = scheduler.settle(CHAIN, waiting, "a", 1, OK, now=NOW)
    assert kinds(woke) == [(RunEvent.step_completed, "a")]
    assert woke.ready == ["b"]
    cancelled = scheduler.cancel(CHAIN, waiting, "user:ada")
    assert (RunEvent.step_cancelled, "a") in kinds(cancelled)
    assert "a" in cancelled.dropped  # its queued wake-up task goes with it
    assert cancelled.state.status is RunStatus.cancelled
