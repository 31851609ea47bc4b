"""How long one invocation may wait on the cloud: retries and long-running operations share it.

Event Grid waits about 30 s for a webhook's answer before it counts the delivery failed, so an
invocation must not block much beyond 20 s. :func:`invocation_budget` opens one budget per
invocation (the message bus does, around the top-level message); :mod:`shared.retry` and the
Azure ML adapter take their waits from what is left. An operation that does not finish in time
is left running and checked again by the reconciler's next tick.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

INVOCATION_BUDGET_S = 20.0


@dataclass(slots=True)
class Budget:
    """Seconds spent since the invocation started, plus waits charged but skipped (tests)."""

    total_s: float
    started: float = field(default_factory=time.monotonic)
    charged_s: float = 0.0

    def spent(self) -> float:
        return time.monotonic() - self.started + self.charged_s

    def remaining(self) -> float:
        return max(0.0, self.total_s - self.spent())

    def charge(self, seconds: float) -> None:
        """Count a wait that testing mode skipped as if it had happened."""
        self.charged_s += max(0.0, seconds)


_current: ContextVar[Budget | None] = ContextVar("autopilot_invocation_budget", default=None)


def current() -> Budget | None:
    """The budget of the invocation running in this context, if one was opened."""
    return _current.get()


def remaining(default: float) -> float:
    """Seconds this invocation may still wait; ``default`` outside an invocation."""
    budget = _current.get()
    return default if budget is None else min(default, budget.remaining())


@contextmanager
def invocation_budget(total_s: float = INVOCATION_BUDGET_S) -> Iterator[Budget]:
    """Open the invocation's budget; nested calls share the outer one."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    budget = Budget(total_s)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
