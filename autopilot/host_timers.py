"""The host's timer triggers: NCRONTAB schedules, one-shot wake-ups and past-due runs."""

from __future__ import annotations

import heapq
import logging
import threading
from datetime import UTC, datetime, tzinfo

from autopilot.host_functions import Timer, call_function
from autopilot.host_triggers import decode, timer_datum

log = logging.getLogger("autopilot.host")

PAST_DUE_AFTER_SECONDS = 1.0  # a timer run this late (missed while busy or asleep) is past due


class TimerHost:
    """Runs timer functions on their schedules, now (``trigger_timer``) or at a time (``wake``)."""

    run_timers: bool
    _timers: dict[str, Timer]
    _stopping: threading.Event
    _wake_lock: threading.Lock
    _zone: tzinfo

    def trigger_timer(self, name: str, *, past_due: bool = False) -> bool:
        """Run a timer function once now, in this thread; False if it raised (logged)."""
        timer = self._timers.get(name)
        if timer is None:
            raise LookupError(f"no timer function named {name!r}")
        return self._run_timer(timer, past_due=past_due, next_due=None)

    def wake(self, name: str, at: datetime) -> None:
        """Run timer ``name`` once more at ``at`` (aware), besides its schedule.

        Not a Functions host feature: the embedded service uses it so a rollout step is
        checked when its bake ends, not at the next scheduled tick. Runs due together (or
        with a scheduled run) collapse into one. Without running timers it does nothing.
        """
        timer = self._timers.get(name)
        if timer is None:
            raise LookupError(f"no timer function named {name!r}")
        if not self.run_timers:
            return
        with self._wake_lock:
            heapq.heappush(timer.one_shots, at.astimezone(UTC))
        timer.poke.set()

    def _take_one_shots(self, timer: Timer, now: datetime) -> tuple[bool, datetime | None]:
        """(whether a one-shot is due at ``now``, removing those; the earliest one left)."""
        due = False
        with self._wake_lock:
            while timer.one_shots and timer.one_shots[0] <= now:
                heapq.heappop(timer.one_shots)
                due = True
            return due, timer.one_shots[0] if timer.one_shots else None

    def _now(self) -> datetime:
        return datetime.now(self._zone)

    def _run_timer(self, timer: Timer, *, past_due: bool, next_due: datetime | None) -> bool:
        with timer.lock:  # like the real listener: never two runs of one timer at once
            started = self._now()
            status = {
                "Last": timer.last.isoformat() if timer.last else "0001-01-01T00:00:00",
                "Next": next_due.isoformat() if next_due else "",
                "LastUpdated": started.isoformat(),
            }
            try:
                datum = timer_datum(past_due=past_due, status=status)
                call_function(timer.function, decode(timer.function.converter, datum))
            except Exception:
                log.exception("timer function %s failed", timer.function.name)
                return False
            finally:
                timer.last = started
            return True

    def _wait_for(self, timer: Timer, due: datetime) -> str:
        """Sleep until the scheduled ``due`` or an earlier one-shot: "scheduled", "one-shot"
        or "stop"."""
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            shot_due, next_shot = self._take_one_shots(timer, now)
            if shot_due:
                return "one-shot"
            remaining = (due.astimezone(UTC) - now).total_seconds()
            if remaining <= 0:
                return "scheduled"
            if next_shot is not None:
                remaining = min(remaining, (next_shot - now).total_seconds())
            if timer.poke.wait(min(max(remaining, 0.0), 1.0)):  # re-check: clocks can jump
                timer.poke.clear()
        return "stop"

    def _run_schedule(self, timer: Timer) -> None:
        if timer.run_on_startup and not self._stopping.is_set():
            self._run_timer(timer, past_due=False, next_due=None)
        due = timer.schedule.next_after(self._now())
        while due is not None:
            woke = self._wait_for(timer, due)
            if woke == "stop":
                return
            if woke == "one-shot":
                self._run_timer(timer, past_due=False, next_due=due)
                continue
            fired = self._now()
            late = (fired.astimezone(UTC) - due.astimezone(UTC)).total_seconds()
            # Counted from this run's start: occurrences missed while it runs collapse into
            # one immediate run, which is then late, hence past due.
            following = timer.schedule.next_after(max(fired, due))
            self._take_one_shots(timer, fired.astimezone(UTC))  # this run covers them
            self._run_timer(timer, past_due=late > PAST_DUE_AFTER_SECONDS, next_due=following)
            due = following
        log.warning("timer %s: schedule has no further occurrence", timer.function.name)
