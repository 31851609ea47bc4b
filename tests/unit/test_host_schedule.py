"""NCRONTAB / TimeSpan timer schedules of the local Functions host (NCrontab semantics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot.host_schedule import (
    CronSchedule,
    IntervalSchedule,
    ScheduleError,
    parse_schedule,
    resolve_settings,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/1 * * * * *", "2024-03-08T12:00:00.500", "2024-03-08T12:00:01"),
        ("* * * * * *", "2024-12-31T23:59:59", "2025-01-01T00:00:00"),
        ("0 */5 * * * *", "2024-03-08T12:03:10", "2024-03-08T12:05:00"),
        ("0 */5 * * * *", "2024-03-08T12:05:00", "2024-03-08T12:10:00"),  # strictly after
        ("5/15 * * * * *", "2024-03-08T12:00:21", "2024-03-08T12:00:35"),  # a/n: a to max
        ("10-20/5 * * * * *", "2024-03-08T12:00:16", "2024-03-08T12:00:20"),
        ("0 0 8,12,18 * * *", "2024-03-08T12:00:00", "2024-03-08T18:00:00"),
        ("0 30 9 * * 1-5", "2024-03-08T10:00:00", "2024-03-11T09:30:00"),  # Fri -> Mon
        ("0 0 12 * * Mon", "2024-03-08T10:00:00", "2024-03-11T12:00:00"),
        ("0 0 12 * * sat,SUNDAY", "2024-03-09T13:00:00", "2024-03-10T12:00:00"),
        ("0 0 12 * * th-F", "2024-03-08T13:00:00", "2024-03-14T12:00:00"),  # name prefixes
        ("0 0 0 1 jul,Jan *", "2024-03-08T10:00:00", "2024-07-01T00:00:00"),
        ("0 0 0 29 2 *", "2023-03-01T00:00:00", "2024-02-29T00:00:00"),
        ("0 0 0 13 * 5", "2024-01-01T00:00:00", "2024-09-13T00:00:00"),  # day AND weekday
        ("0 0 0 31 * *", "2024-04-01T00:00:00", "2024-05-31T00:00:00"),  # skips 30-day months
        ("0 0 0 * * 0", "2024-03-08T10:00:00", "2024-03-10T00:00:00"),  # 0 = Sunday
        ("  0  0  0  *  *  0  ", "2024-03-08T10:00:00", "2024-03-10T00:00:00"),
    ],
)
def test_next_occurrence(schedule: str, after: str, expected: str) -> None:
    assert parse_schedule(schedule).next_after(at(after)) == at(expected)


def test_a_schedule_that_never_occurs_has_no_next() -> None:
    assert CronSchedule.parse("0 0 0 31 2 *").next_after(at("2024-01-01T00:00:00")) is None


def test_the_time_zone_of_the_base_moment_is_kept() -> None:
    moment = datetime(2024, 3, 8, 12, 0, tzinfo=UTC)
    assert parse_schedule("0 0 13 * * *").next_after(moment) == moment + timedelta(hours=1)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * * *", "needs 6"),  # 5-field cron is refused by the Functions host too
        ("* * * * * * *", "needs 6"),
        ("60 * * * * *", "second"),
        ("* 0-60 * * * *", "minute"),
        ("* * 24 * * *", "hour"),
        ("* * * 0 * *", "day"),
        ("* * * * 13 *", "month"),
        ("* * * * * 7", "day-of-week"),  # NCrontab allows 0-6 only
        ("*/0 * * * * *", "step"),
        ("*/x * * * * *", "step"),
        ("5-1 * * * * *", "backwards"),
        ("* * * * * sat-sun", "backwards"),  # days of week run 0 (Sunday) to 6
        ("a * * * * *", "not a number"),
        ("* * * * * Funday", "not a known name"),
        ("1,,2 * * * * *", "empty"),
        ("", "needs 6"),
    ],
)
def test_invalid_schedules_say_which_field(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(schedule)


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("00:05:00", timedelta(minutes=5)),
        ("01:00", timedelta(hours=1)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
    ],
)
def test_timespan_schedules_run_every_interval(text: str, interval: timedelta) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(at("2024-03-08T12:00:00")) == at("2024-03-08T12:00:00") + interval


@pytest.mark.parametrize("text", ["00:00:00", "25:00:00", "00:61:00"])
def test_invalid_timespans_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_settings_are_resolved_and_a_missing_one_is_named() -> None:
    assert resolve_settings("%EVERY%", {"EVERY": "0 */5 * * * *"}) == "0 */5 * * * *"
    assert resolve_settings("0 0 * * * *", {}) == "0 0 * * * *"
    with pytest.raises(ScheduleError, match="RECONCILE_SCHEDULE"):
        resolve_settings("%RECONCILE_SCHEDULE%", {})
