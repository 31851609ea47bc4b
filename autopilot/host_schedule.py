"""Timer-trigger schedules for the local Functions host, with the Functions host's rules.

The real host (WebJobs timer extension) reads ``schedule`` as a six-field NCRONTAB
expression (``{second} {minute} {hour} {day} {month} {day-of-week}``, parsed by the
NCrontab library with seconds included) or, failing that, as a TimeSpan (``hh:mm:ss`` or
``d.hh:mm:ss``) meaning "every interval". This module follows NCrontab's semantics:

- a field is ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the
  field's maximum), or a comma list of those;
- months and days of week may be given by English name or any prefix of one, case-insensitive
  (``Jan``, ``mon``, ``Friday``); days of week run 0-6 with 0 = Sunday (7 is refused);
- day of month *and* day of week must both match (unlike Vixie cron, which ORs them).

``%NAME%`` schedules are resolved from app settings first, as the real host does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAYS_OF_WEEK = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")

# (name, low, high, value names) per field, in expression order.
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 6, DAYS_OF_WEEK),
)
# The Gregorian calendar repeats every 400 years, so a schedule that has no occurrence in
# that span (say 30 February) never fires.
_SEARCH_DAYS = 146_097
_SETTING = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?")


class ScheduleError(ValueError):
    """The schedule text is not a valid NCRONTAB expression or TimeSpan; says why."""


class TimerSchedule(Protocol):
    """When a timer function runs next."""

    @property
    def text(self) -> str:
        """The schedule as written (after %SETTING% resolution)."""
        ...

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after ``moment`` (same tzinfo), or None if never."""
        ...


def resolve_settings(text: str, settings: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with its app setting, like the host's binding expressions."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise ScheduleError(f"schedule {text!r} names app setting {name}, which is not set")
        return settings[name]

    return _SETTING.sub(setting, text)


def parse_schedule(text: str) -> TimerSchedule:
    """An NCRONTAB six-field expression, else a TimeSpan interval; ScheduleError if neither."""
    stripped = text.strip()
    if _TIMESPAN.fullmatch(stripped):
        return IntervalSchedule.parse(stripped)
    return CronSchedule.parse(stripped)


def _value(token: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        return int(token)
    if not token:
        raise ScheduleError(f"{field}: empty value")
    if names:
        for index, name in enumerate(names):
            if name.lower().startswith(token.lower()):  # NCrontab: any prefix of a name
                return low + index
        raise ScheduleError(f"{field}: {token!r} is not a known name ({', '.join(names)})")
    raise ScheduleError(f"{field}: {token!r} is not a number between {low} and {high}")


def _field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"{field}: step in {part!r} must be a whole number >= 1")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start = _value(first, field, low, high, names)
            end = _value(last, field, low, high, names)
        else:
            start = _value(body, field, low, high, names)
            end = high if slash else start  # NCrontab: "a/n" runs from a to the maximum
        if not low <= start <= high or not low <= end <= high:
            raise ScheduleError(f"{field}: {part!r} is outside {low}-{high}")
        if start > end:
            raise ScheduleError(f"{field}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A six-field NCRONTAB schedule: second minute hour day month day-of-week."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise ScheduleError(
                f"NCRONTAB {text!r} has {len(parts)} fields; it needs 6: "
                "{second} {minute} {hour} {day} {month} {day-of-week}"
            )
        try:
            sets = [
                _field(part, name, low, high, names)
                for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
            ]
        except ScheduleError as exc:
            raise ScheduleError(f"NCRONTAB {text!r}: {exc}") from exc
        return cls(
            text,
            tuple(sorted(sets[0])),
            tuple(sorted(sets[1])),
            tuple(sorted(sets[2])),
            sets[3],
            sets[4],
            sets[5],
        )

    def _day_matches(self, day: date) -> bool:
        sunday_first = (day.weekday() + 1) % 7
        return (
            day.day in self.days and day.month in self.months and sunday_first in self.days_of_week
        )

    def _first_time_at_or_after(self, earliest: time) -> time | None:
        for hour in self.hours:
            if hour < earliest.hour:
                continue
            for minute in self.minutes:
                if hour == earliest.hour and minute < earliest.minute:
                    continue
                for second in self.seconds:
                    if (hour, minute) == (earliest.hour, earliest.minute) and (
                        second < earliest.second
                    ):
                        continue
                    return time(hour, minute, second)
        return None

    def next_after(self, moment: datetime) -> datetime | None:
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        earliest = start.time()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                found = self._first_time_at_or_after(earliest)
                if found is not None:
                    return datetime.combine(day, found, tzinfo=moment.tzinfo)
            day += timedelta(days=1)
            earliest = time(0, 0, 0)
        return None


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """A TimeSpan schedule (``hh:mm:ss``): every interval, counted from the last run."""

    text: str
    interval: timedelta

    @classmethod
    def parse(cls, text: str) -> IntervalSchedule:
        match = _TIMESPAN.fullmatch(text.strip())
        if not match:
            raise ScheduleError(f"{text!r} is not a TimeSpan (hh:mm:ss or d.hh:mm:ss)")
        days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ScheduleError(f"TimeSpan {text!r} has an hour, minute or second out of range")
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ScheduleError(f"TimeSpan {text!r} must be longer than zero")
        return cls(text, interval)

    def next_after(self, moment: datetime) -> datetime | None:
        return moment + self.interval
