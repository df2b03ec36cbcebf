"""When schedules' ticks fall, and what is fired when ticks are due or missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflow_engine.schedules.timing import CatchUp, Timing, TimingError, due

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def _cron(expression: str, zone: str = "UTC", **bounds: datetime) -> Timing:
    return Timing(expression, zone, None, bounds.get("start_at"), bounds.get("end_at"), T0)


def _every(seconds: float, **bounds: datetime) -> Timing:
    start = bounds.get("start_at")
    return Timing(None, "UTC", seconds, start, bounds.get("end_at"), start or T0)


def test_a_cron_tick_falls_in_its_time_zone_across_a_daylight_saving_change() -> None:
    paris = _cron("0 9 * * *", "Europe/Paris")
    first = paris.first_at_or_after(T0)  # Saturday 28 March 2026, after 09:00 in Paris
    assert first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # Sunday: summer time, UTC+2
    assert paris.upcoming(first, 2)[1] == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    before_change = paris.first_at_or_after(datetime(2026, 3, 27, 0, 0, tzinfo=UTC))
    assert before_change == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # winter time, UTC+1


def test_a_tick_at_the_moment_itself_counts() -> None:
    hourly = _cron("0 * * * *")
    assert hourly.first_at_or_after(T0) == T0
    assert hourly.after(T0) == T0 + timedelta(hours=1)


def test_intervals_count_from_their_start_and_stop_before_their_end() -> None:
    start = T0 + timedelta(seconds=10)
    timing = _every(2.5, start_at=start, end_at=start + timedelta(seconds=10))
    assert timing.first_at_or_after(T0) == start
    assert timing.first_at_or_after(start + timedelta(seconds=1)) == start + timedelta(seconds=2.5)
    assert timing.upcoming(start, 10) == [start + timedelta(seconds=2.5 * k) for k in range(4)]
    assert timing.first_at_or_after(start + timedelta(seconds=10)) is None


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        (Timing(None, "UTC", None, None, None, T0), "cron"),
        (Timing("0 9 * * *", "UTC", 60, None, None, T0), "cron"),
        (Timing("0 9 * *", "UTC", None, None, None, T0), "cron"),
        (Timing("61 9 * * *", "UTC", None, None, None, T0), "cron"),
        (Timing("0 9 * * *", "Mars/Olympus", None, None, None, T0), "timezone"),
        (Timing(None, "UTC", 0.5, None, None, T0), "interval_seconds"),
        (Timing(None, "UTC", 5, T0, T0, T0), "end_at"),
    ],
)
def test_timings_that_cannot_tick_name_their_field(timing: Timing, field: str) -> None:
    with pytest.raises(TimingError) as raised:
        timing.check()
    assert raised.value.field == field


def test_due_ticks_within_their_grace_each_fire() -> None:
    timing = _every(1)
    ticks = due(timing, T0, T0 + timedelta(seconds=1.5), CatchUp.skip)
    assert ticks.fire == [T0, T0 + timedelta(seconds=1)]  # late, but within 5 s of grace
    assert (ticks.missed, ticks.next_fire_at) == (0, T0 + timedelta(seconds=2))


@pytest.mark.parametrize(
    ("catch_up", "fired"),
    [(CatchUp.skip, []), (CatchUp.run_once, [T0 + timedelta(hours=2)])],
)
def test_missed_ticks_follow_the_catch_up_policy(catch_up: CatchUp, fired: list[datetime]) -> None:
    hourly = _cron("0 * * * *")
    now = T0 + timedelta(hours=2, minutes=30)  # the server was down since before noon
    ticks = due(hourly, T0, now, catch_up)
    assert (ticks.fire, ticks.missed) == (fired, 3)
    assert ticks.next_fire_at == T0 + timedelta(hours=3)


def test_a_schedule_far_behind_resumes_near_now() -> None:
    timing = _every(1)
    now = T0 + timedelta(days=1)
    ticks = due(timing, T0, now, CatchUp.skip)
    assert ticks.fire == []
    assert ticks.next_fire_at is not None
    assert now - timedelta(seconds=5) <= ticks.next_fire_at <= now


def test_a_long_interval_moves_on_by_a_microsecond() -> None:
    hourly = _every(3600, start_at=T0)
    assert hourly.after(T0) == T0 + timedelta(hours=1)
    ticks = due(hourly, T0, T0 + timedelta(hours=3, minutes=10), CatchUp.run_once)
    assert (ticks.fire, ticks.missed) == ([T0 + timedelta(hours=3)], 4)
