"""When a schedule's ticks fall: a cron expression in a time zone, or a fixed interval; pure.

- **Cron**: five fields (minute, hour, day of month, month, day of week), read by croniter in
  the schedule's IANA time zone, so `0 9 * * 1-5` is 09:00 on weekdays there, across
  daylight-saving changes.
- **Interval**: every `interval_seconds`, counted from `start_at` (or from when the schedule
  was created).
- `start_at` and `end_at` bound the ticks: none before `start_at`, none at or after `end_at`.

A tick is *missed* when it is more than its grace late: the schedule's period, at least
`MIN_GRACE` and at most `MAX_GRACE` (a server that was down, or paused work). Ticks within their
grace are each fired; what happens to missed ones is the schedule's `catch_up` policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

MIN_GRACE = timedelta(seconds=5)
MAX_GRACE = timedelta(seconds=60)
# How many due ticks are looked at once (a schedule every second, down for a day, has 86,400).
MAX_DUE = 1000
UPCOMING = 5  # fire times a schedule shows
_MICROSECOND = timedelta(microseconds=1)
# A cron tick is looked for from a day into what a datetime holds, so that any zone's offset
# still fits; nothing comes after the last moment it holds.
_FIRST = datetime(1, 1, 2, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


class CatchUp(StrEnum):
    skip = "skip"  # missed ticks start nothing
    run_once = "run_once"  # missed ticks start one run, for the last of them


class TimingError(ValueError):
    """A cron expression, time zone or interval that cannot say when ticks fall; `field`
    names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Timing:
    cron: str | None
    timezone: str
    interval_seconds: float | None
    start_at: datetime | None
    end_at: datetime | None
    anchor: datetime  # where an interval counts from: `start_at`, else the creation time

    def check(self) -> None:
        """Raise `TimingError` naming what is wrong."""
        if (self.cron is None) == (self.interval_seconds is None):
            raise TimingError("cron", "give either `cron` or `interval_seconds`")
        self.zone()
        if self.cron is not None and (
            len(self.cron.split()) != 5 or not croniter.is_valid(self.cron)
        ):
            raise TimingError(
                "cron", f"`cron` must be five fields (minute hour day month weekday): {self.cron!r}"
            )
        if self.interval_seconds is not None and not (
            math.isfinite(self.interval_seconds) and self.interval_seconds >= 1
        ):
            raise TimingError("interval_seconds", "`interval_seconds` must be at least 1")
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise TimingError("end_at", "`end_at` must come after `start_at`")

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"unknown time zone {self.timezone!r} (an IANA name)"
            raise TimingError("timezone", message) from None

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        """The first tick at `moment` or later, or None when no tick remains."""
        if self.start_at is not None and moment < self.start_at:
            moment = self.start_at
        try:
            tick = self._at_or_after(moment)
        except OverflowError:  # past the year 9999, the last a datetime holds: no tick
            return None
        if self.end_at is not None and tick >= self.end_at:
            return None
        return tick

    def _at_or_after(self, moment: datetime) -> datetime:
        if self.interval_seconds is not None:  # in whole microseconds: no rounding drift
            step = round(self.interval_seconds * 1_000_000)
            elapsed = (moment - self.anchor) // _MICROSECOND
            periods = max(-(-elapsed // step), 0)  # rounded up
            return self.anchor + periods * step * _MICROSECOND
        assert self.cron is not None
        local = (max(moment, _FIRST) - timedelta(microseconds=1)).astimezone(self.zone())
        tick: datetime = croniter(self.cron, local).get_next(datetime)
        return tick.astimezone(UTC)

    def after(self, tick: datetime) -> datetime | None:
        """The tick after `tick`."""
        if tick >= _LAST:
            return None
        return self.first_at_or_after(tick + timedelta(microseconds=1))

    def upcoming(self, start: datetime | None, count: int = UPCOMING) -> list[datetime]:
        """`count` ticks from `start` (itself a tick) on."""
        ticks: list[datetime] = []
        tick = start
        while tick is not None and len(ticks) < count:
            ticks.append(tick)
            tick = self.after(tick)
        return ticks

    def grace(self) -> timedelta:
        if self.interval_seconds is not None:
            period = timedelta(seconds=self.interval_seconds)
        else:
            first = self.first_at_or_after(self.anchor)
            second = self.after(first) if first is not None else None
            period = (second - first) if first is not None and second is not None else MAX_GRACE
        return max(MIN_GRACE, min(MAX_GRACE, period))


@dataclass(frozen=True)
class Due:
    """What to do about the ticks due at a moment: fire these (one run each), and where the
    schedule goes next (None: no tick remains)."""

    fire: list[datetime]
    missed: int
    next_fire_at: datetime | None


def due(timing: Timing, next_fire_at: datetime, now: datetime, catch_up: CatchUp) -> Due:
    """The ticks from `next_fire_at` up to `now`: those within their grace fire; missed ones
    follow the `catch_up` policy."""
    grace = timing.grace()
    on_time: list[datetime] = []
    missed: list[datetime] = []
    tick: datetime | None = next_fire_at
    while tick is not None and tick <= now and len(on_time) + len(missed) < MAX_DUE:
        (on_time if now - tick <= grace else missed).append(tick)
        tick = timing.after(tick)
    if tick is not None and tick <= now:  # more than MAX_DUE behind: all missed
        tick = timing.first_at_or_after(now - grace)
    fire = ([missed[-1]] if missed and catch_up is CatchUp.run_once else []) + on_time
    return Due(fire, len(missed), tick)
